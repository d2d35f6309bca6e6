"""Evaluate a checkpoint: encode queries and database, rank by Hamming distance, report mAP.

    python evaluate.py --checkpoint RUN/best.pt [--data DIR] [--out DIR]

The model is rebuilt from the checkpoint alone. Codes are the sign of the tanh outputs (0 -> +1).
I2T ranks the database's text codes for each query image code; T2I the reverse. mAP is over the whole
ranking; relevant = shares at least one label; ties at equal Hamming distance are broken by database
index ("index", the headline number) or averaged over all orders ("tie_avg"); see cmh/evaluation/hamming_metrics.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cmh.evaluation.encoding import default_directions, format_table, retrieval_metrics
from cmh.evaluation.from_checkpoint import checkpoint_file, encode_splits, load_for_evaluation
from cmh.evaluation.plots import plot_title, save_plots
from cmh.utils import progress
from cmh.utils.atomic_io import write_text_atomic
from cmh.utils.cli import Parser
from cmh.utils.errors import UserError


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


def evaluate_checkpoint(args: argparse.Namespace) -> tuple[dict, list[Path]]:
    """(results, the files written) of --checkpoint on --data's query and database splits."""
    loaded = load_for_evaluation(checkpoint_file(args.checkpoint), args.data, args.device)
    out = Path(args.out) if args.out else loaded.path.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    splits = (args.split_query, args.split_database)
    say = logging.getLogger("evaluate").info
    encoded = encode_splits(loaded, splits, args.batch_size, args.num_workers, args.amp, say=say)
    q, db = encoded[args.split_query], encoded[args.split_database]
    directions = default_directions(loaded.model, args.intra)
    results = retrieval_metrics(q, db, directions)
    results.update(
        checkpoint=str(loaded.path),
        data=str(loaded.data.root),
        epoch=loaded.state.get("epoch"),
        bits=loaded.cfg.bits,
        n_query=len(q["labels"]),
        n_database=len(db["labels"]),
    )
    written = [out / "results.json"]
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    if args.plots:
        title = plot_title(loaded.path.parent, loaded.data.root, loaded.cfg.bits,
                           loaded.state.get("epoch"), loaded.path)  # fmt: skip
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
