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

import numpy as np
import torch

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
from cmh.retrieval_curves import pr_curve_by_radius, precision_at_n

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


def plot_title(
    data: str | Path, bits: int, epoch: int | None, checkpoint: str | Path = "best.pt"
) -> str:
    """The run a plot shows: the data folder's name (with its parent for a plain "prepared"),
    the code length and the checkpoint's epoch ("best epoch N" for best.pt)."""
    data, name = Path(data), Path(checkpoint).name
    folder = f"{data.parent.name}/{data.name}" if data.name == "prepared" else data.name
    when = f"best epoch {epoch}" if name == "best.pt" else f"{name} epoch {epoch}"
    return f"{folder} · {bits} bits · {when}"


def radius_marks(bits: int) -> list[int]:
    """The Hamming radii labelled on the PR curve: 0, 1, 2 and quarters of the code length."""
    return sorted({t for t in (0, 1, 2, bits // 4, bits // 2, bits) if 0 <= t <= bits})


def plot_figures(
    queries: dict, database: dict, directions=("i2t", "t2i"), results=None, title: str = ""
) -> dict:
    """{file name: matplotlib Figure}: PR over Hamming radius (a few radii labelled) and
    precision@N, every direction; ``title`` (plot_title) on both; each legend entry with the
    direction's mAP (``results["map_<d>"]``); a dashed line at chance (cmh.hamming_metrics.
    chance_level: the mean fraction of the database relevant to a query, which is the precision
    of a random ranking at any cut-off); the precision axis from 0 to 1."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend switch

    results = results or {}
    n_db = len(database["labels"])
    ns = np.unique(np.linspace(1, n_db, num=min(50, n_db)).astype(int))
    figs = {name: Figure(figsize=(5.5, 4.5)) for name in ("pr_curve.png", "precision_at_n.png")}
    ax_pr, ax_pn = (fig.subplots() for fig in figs.values())
    for d in directions:
        q_mod, db_mod = DIRECTIONS[d]
        if q_mod not in queries or db_mod not in database:
            continue
        args = (queries[q_mod], database[db_mod], queries["labels"], database["labels"])
        label = d.upper() + (f"  mAP {results[f'map_{d}']:.3f}" if f"map_{d}" in results else "")
        precision, recall = pr_curve_by_radius(*args)
        (line,) = ax_pr.plot(recall, precision, marker=".", label=label)
        for t in radius_marks(len(precision) - 1):
            xy = (recall[t], precision[t])
            ax_pr.annotate(
                f"r={t}",
                xy,
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                color=line.get_color(),
            )
        ax_pn.plot(ns, precision_at_n(*args, ns), label=label)
    ax_pr.set(xlabel="recall (r: Hamming radius)", ylabel="precision", xlim=(0, 1.02))
    ax_pn.set(xlabel="N", ylabel="precision@N")
    chance = chance_level(queries["labels"], database["labels"])
    for ax, what in ((ax_pr, "PR over Hamming radius"), (ax_pn, "Precision at N")):
        ax.axhline(chance, linestyle="--", color="gray", label=f"chance {chance:.3f}")
        ax.set(title=f"{what}\n{title}" if title else what, ylim=(0, 1.02))
        ax.legend()
        ax.grid(alpha=0.3)
    for fig in figs.values():
        fig.tight_layout()
    return figs


def save_plots(
    queries: dict,
    database: dict,
    out: Path,
    directions=("i2t", "t2i"),
    *,
    results=None,
    title: str = "",
) -> list[Path]:
    """The figures of plot_figures written as PNG into ``out``; their paths."""
    paths = []
    for name, fig in plot_figures(queries, database, directions, results, title).items():
        fig.savefig(out / name, dpi=120)
        paths.append(out / name)
    return paths


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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
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


def evaluate_checkpoint(args: argparse.Namespace) -> dict:
    from cmh.checkpoint_io import load_checkpoint
    from data import HashingDataset, load_prepared, make_loader

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
    encoded = {}
    for split in (args.split_query, args.split_database):
        ds = HashingDataset(
            data,
            split,
            tokenizer=tokenizer,
            max_length=cfg.max_length,
            image_size=cfg.image_size,
            train=False,
            bow=cfg.text_encoder == "bow",
            images=model.image is not None,
        )
        loader = make_loader(
            ds,
            args.batch_size,
            shuffle=False,
            seed=0,
            num_workers=args.num_workers,
            pad_id=pad_id(tokenizer),
        )
        encoded[split] = encode(model, loader, device, args.amp, desc=f"encode {split}")
    q, db = encoded[args.split_query], encoded[args.split_database]
    directions = default_directions(model, args.intra)
    results = retrieval_metrics(q, db, directions)
    results.update(
        checkpoint=str(args.checkpoint),
        epoch=state.get("epoch"),
        bits=cfg.bits,
        n_query=len(q["labels"]),
        n_database=len(db["labels"]),
    )
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.plots:
        title = plot_title(data.root, cfg.bits, state.get("epoch"), args.checkpoint)
        save_plots(q, db, out, directions, results=results, title=title)
    return results


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        results = evaluate_checkpoint(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
