"""Mean ± std over seeds of a seed sweep (scripts/run_all_bits.sh OUT --seeds ...).

    python scripts/seed_results.py OUT

reads every OUT/bits{B}/seed{S}/results.json and writes

    OUT/results.md       mean ± std per code length and direction (both tie policies, and the
                         queries-selected number when the runs had --query-every), then per seed
    OUT/results.json     the same numbers (cmh.evaluation.seed_table.aggregate) and the run folders
    OUT/seed_curves.png  every seed's validation curve, one panel per code length

A run folder without results.json (still running, or stopped) is named on stderr and left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cmh.runs.sweeps import load_sweep
from cmh.utils.atomic_io import write_text_atomic


def summarize(out: Path) -> tuple[dict, str]:
    """Aggregate a sweep and write results.md, results.json and seed_curves.png into ``out``;
    (aggregate, markdown). Raises FileNotFoundError naming ``out`` when it holds no finished
    run."""
    from cmh.evaluation.seed_table import aggregate, format_markdown
    from cmh.evaluation.training_curves import plot_seed_curves

    runs, unfinished, folders = load_sweep(out)
    for run_dir in unfinished:
        print(f"note: {run_dir} has no results.json (not finished): left out", file=sys.stderr)
    if not runs:
        raise FileNotFoundError(
            f"no finished run under {out} (expected {out}/bits<B>/seed<S>/results.json; "
            "run scripts/run_all_bits.sh OUT --seeds ... first)"
        )
    agg = aggregate([{k: r[k] for k in ("seed", "bits", "results")} for r in runs])
    markdown = format_markdown(agg)
    write_text_atomic(out / "results.md", markdown)
    record = {**agg, "runs": [r["run"] for r in runs], "unfinished": [str(p) for p in unfinished]}
    write_text_atomic(out / "results.json", json.dumps(record, indent=2) + "\n")
    plot_seed_curves(folders, out / "seed_curves.png")
    return agg, markdown


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the table and say where the files went."""
    from cmh.utils.cli import Parser

    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the sweep folder (holds bits<B>/seed<S>/)")
    args = parser.parse_args(argv)
    try:
        _, markdown = summarize(args.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown)
    print(
        f"wrote {args.out / 'results.md'}, {args.out / 'results.json'} and "
        f"{args.out / 'seed_curves.png'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
