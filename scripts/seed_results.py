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
import re
import sys
from pathlib import Path

from cmh.utils.atomic_io import write_text_atomic

RUN_FOLDER = re.compile(r"seed(-?\d+)$")
BITS_FOLDER = re.compile(r"bits(\d+)$")


def run_folders(out: Path) -> dict[int, list[Path]]:
    """{bits: [OUT/bits{B}/seed{S}, ...]} for every such folder, by code length and seed."""
    found: dict[int, list[Path]] = {}
    for bits_dir in sorted(out.glob("bits*")):
        b = BITS_FOLDER.match(bits_dir.name)
        if not (b and bits_dir.is_dir()):
            continue
        seeds = [p for p in bits_dir.glob("seed*") if p.is_dir() and RUN_FOLDER.match(p.name)]
        seeds.sort(key=lambda p: int(RUN_FOLDER.match(p.name).group(1)))
        if seeds:
            found[int(b.group(1))] = seeds
    return dict(sorted(found.items()))


def load_run(run_dir: Path, bits: int) -> dict | None:
    """{"seed", "bits", "results", "run"} of a finished run folder; None without results.json.
    The seed is args.json's (the folder name's when args.json lacks it)."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    args_path = run_dir / "args.json"
    args = json.loads(args_path.read_text()) if args_path.is_file() else {}
    seed = args.get("seed", int(RUN_FOLDER.match(run_dir.name).group(1)))
    return {
        "seed": seed,
        "bits": results.get("bits", bits),
        "results": results,
        "run": str(run_dir),
    }


def load_sweep(out: Path) -> tuple[list[dict], list[Path], dict[int, list[Path]]]:
    """(finished runs, unfinished run folders, every run folder by code length) of a sweep."""
    folders = run_folders(out)
    runs, unfinished = [], []
    for bits, dirs in folders.items():
        for run_dir in dirs:
            run = load_run(run_dir, bits)
            if run is None:
                unfinished.append(run_dir)
            else:
                runs.append(run)
    return runs, unfinished, folders


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
