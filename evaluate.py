"""Evaluate a checkpoint: encode queries and database, rank by Hamming distance, report mAP.

    python evaluate.py --checkpoint RUN/best.pt [--data DIR] [--out DIR]

The model is rebuilt from the checkpoint alone. Codes are the sign of the tanh outputs (0 -> +1).
I2T ranks the database's text codes for each query image code; T2I the reverse. mAP is over the whole
ranking; relevant = shares at least one label; ties at equal Hamming distance are broken by database
index ("index", the headline number) or averaged over all orders ("tie_avg"); see cmh/hamming_metrics.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from cmh import progress
from cmh.cli import Parser
from cmh.encoding import (  # noqa: F401  (encode is this module's public entry point too)
    DIRECTIONS,
    default_directions,
    encode,
    pad_id,
    retrieval_metrics,
)
from cmh.errors import UserError
from cmh.hamming_metrics import (  # noqa: F401  (mean_average_precision: public here too)
    chance_level,
    mean_average_precision,
)
from cmh.plots import plot_figures, plot_title, radius_marks, save_plots  # noqa: F401

log = logging.getLogger("evaluate")


def format_table(results: dict) -> str:
    """A small text table: direction, mAP (ties by index), mAP (tie-averaged), chance."""
    rows = ["direction   mAP(index)  mAP(tie-avg)  chance"]
    for d in DIRECTIONS:
        if f"map_{d}" in results:
            rows.append(
                f"{d.upper():<10}  {results[f'map_{d}']:.4f}      "
                f"{results[f'map_{d}_tie_avg']:.4f}        {results[f'chance_{d}']:.4f}"
            )
    return "\n".join(rows)


def check_labels_match(model_labels: list[str], data, path) -> None:
    """Refuse a data folder whose label columns differ from those the model was trained on."""
    theirs = list(data.label_names)
    if not model_labels or list(model_labels) == theirs:
        return
    if len(model_labels) != len(theirs):
        detail = f"{len(model_labels)} labels in the checkpoint, {len(theirs)} in the data"
    else:
        i = next(i for i, (a, b) in enumerate(zip(model_labels, theirs, strict=True)) if a != b)
        detail = f"column {i}: '{model_labels[i]}' in the checkpoint, '{theirs[i]}' in the data"
    raise UserError(f"the labels of {path} do not match the checkpoint's ({detail})")


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoint file (RUN/best.pt or last.pt)")
    p.add_argument("--data", help="prepared dataset folder (default: the one the run trained on)")
    p.add_argument("--out", help="output folder for results.json and plots (default: RUN/eval)")
    p.add_argument("--split-query", default="query", help="split used as queries")
    p.add_argument("--split-database", default="database", help="split used as the database")
    p.add_argument("--intra", action="store_true", help="also report I2I and T2T")
    p.add_argument("--batch-size", type=int, default=128, help="encoding batch size")
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device")
    p.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16 autocast on CUDA"
    )
    p.add_argument(
        "--plots",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write PR and P@N curves as PNG",
    )
    progress.add_flag(p.add_argument)
    return p.parse_args(argv)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


def load_model(state: dict, device: torch.device, source: str | Path = "the checkpoint"):
    """(model, tokenizer, config) rebuilt from a checkpoint dict alone; UserError naming `source`
    when its weights do not fit its own model config (e.g. an edited code length)."""
    from models import ModelConfig, build_model

    cfg = ModelConfig.from_dict(state["model_config"])
    model, tokenizer = build_model(cfg, pretrained=False)
    try:  # strict: a key mismatch is an error, not a silent skip
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        detail = "; ".join(x.strip() for x in str(e).splitlines()[1:4] if x.strip())
        raise UserError(
            f"{source}: its weights do not fit its model config ({cfg.bits} bits, text model "
            f"{cfg.text_model}): {detail[:600]}"
        ) from e
    return model.to(device), tokenizer, cfg


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or ``path/best.pt`` when ``path`` is a run folder (and it says so);
    UserError for a folder without best.pt."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / "best.pt").is_file():
        print(f"{path} is a run folder: evaluating {path / 'best.pt'}", file=sys.stderr)
        return path / "best.pt"
    raise UserError(f"--checkpoint {path} is a directory without best.pt; give RUN/best.pt")


def encode_splits(args: argparse.Namespace, state: dict, model, tokenizer, data, device) -> dict:
    """{split: encode(...)} of the query and database splits. A model trained with
    --freeze-backbones is encoded from the run's frozen-feature cache when a file with the
    training key exists (the same codes, without running the backbones); it says so."""
    from cmh.frozen_features import encode_from_cache, reusable_cache
    from data import HashingDataset, make_loader

    cfg, splits = model.config, (args.split_query, args.split_database)
    amp = args.amp and device.type == "cuda"
    cache = reusable_cache(model, data.root, state.get("args", {}), amp)
    if cache is not None:
        log.info("frozen backbones: encoding from the feature cache %s (as training did)", cache)
        return encode_from_cache(model, cache, data, splits, args.batch_size, device, amp)
    encoded = {}
    for split in splits:
        ds = HashingDataset(
            data,
            split,
            tokenizer=tokenizer,
            max_length=cfg.max_length,
            image_size=cfg.image_size,
            train=False,
            bow=cfg.text_encoder == "bow",
            images=model.image is not None,
            norm=cfg.image_norm,
        )
        loader = make_loader(
            ds,
            args.batch_size,
            shuffle=False,
            seed=0,
            num_workers=args.num_workers,
            pad_id=pad_id(tokenizer),
        )
        encoded[split] = encode(model, loader, device, amp, desc=f"encode {split}")
    return encoded


def evaluate_checkpoint(args: argparse.Namespace) -> tuple[dict, list[Path]]:
    """(results, the files written) of --checkpoint on --data's query and database splits."""
    from cmh.checkpoint_io import load_checkpoint
    from data import load_prepared

    args.checkpoint = checkpoint_file(args.checkpoint)
    state = load_checkpoint(args.checkpoint)
    data_dir = args.data or state.get("args", {}).get("data")
    if not data_dir:
        raise UserError("the checkpoint does not say which data it was trained on; pass --data DIR")
    data = load_prepared(data_dir)
    device = resolve_device(args.device)
    model, tokenizer, cfg = load_model(state, device, source=args.checkpoint)
    check_labels_match(cfg.label_names, data, data_dir)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    encoded = encode_splits(args, state, model, tokenizer, data, device)
    q, db = encoded[args.split_query], encoded[args.split_database]
    directions = default_directions(model, args.intra)
    results = retrieval_metrics(q, db, directions)
    results.update(
        checkpoint=str(args.checkpoint),
        data=str(data.root),
        epoch=state.get("epoch"),
        bits=cfg.bits,
        n_query=len(q["labels"]),
        n_database=len(db["labels"]),
    )
    written = [out / "results.json"]
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.plots:
        title = plot_title(data.root, cfg.bits, state.get("epoch"), args.checkpoint)
        written += save_plots(q, db, out, directions, results=results, title=title)
    return results, written


def where_it_went(results: dict, written: list[Path]) -> str:
    """What was evaluated, the files written and the next command."""
    checkpoint = results["checkpoint"]
    index = Path(checkpoint).parent / "index"
    return "\n".join(
        [
            f"checkpoint {checkpoint} (epoch {results['epoch']}, {results['bits']} bits) on "
            f"{results['data']}: {results['n_query']} queries x {results['n_database']} database",
            "wrote " + ", ".join(str(p) for p in written),
            f"next: python retrieve.py index --checkpoint {checkpoint} --out {index}",
        ]
    )


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    progress.configure(args.progress)
    try:
        results, written = evaluate_checkpoint(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(where_it_went(results, written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
