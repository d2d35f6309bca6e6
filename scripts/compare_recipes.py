"""The reference's recipe beside ours, and both beside the published numbers.

    python scripts/compare_recipes.py OUT

reads the seed sweeps OUT/seed-recipe/ and OUT/default-recipe/ (bits{B}/seed{S}/results.json,
as scripts/reproduce_seed.sh writes them), prints a markdown comparison and writes it to
OUT/comparison.md: per code length, each recipe's mean ± std over seeds with the epoch chosen on
the validation split (ours) and on the queries (the reference's protocol, optimistic), next to
the published 32-bit numbers. A sweep without any finished run is named and left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

# sweep folder under OUT -> what the table calls it
RECIPES = {
    "seed-recipe": "reference recipe (`--recipe seed`)",
    "default-recipe": "default recipe",
}
VALIDATION = "validation split"
QUERIES = "queries (optimistic)"
# Published on IAPR TC-12 at 32 bits, not reproduced here:
# - the reference implementation, zhongzhh8/Cross-Modal-Retrieval (commit 17c021d): the
#   "Result" table of its README (32 bits, margin 12), the best over epochs on the test
#   queries (its main.py evaluates the queries every 10 epochs and names checkpoints by it).
# - DCMH: Q.-Y. Jiang and W.-J. Li, "Deep Cross-Modal Hashing", CVPR 2017, its MAP table on
#   IAPR TC-12 at 32 bits (a CNN-F image network and bag-of-words text; its own protocol).
PUBLISHED = {
    32: [
        ("published: reference implementation", QUERIES, {"i2t": 0.5986, "t2i": 0.6035}),
        ("published: DCMH (Jiang & Li, CVPR 2017)", "as published", {"i2t": 0.4732, "t2i": 0.5378}),
    ]
}


def load_aggregates(out: Path) -> dict[str, dict]:
    """{sweep folder name: cmh.evaluation.seed_table.aggregate of its finished runs}; a sweep without a
    finished run is named on stderr and left out."""
    from cmh.evaluation.seed_table import aggregate
    from cmh.runs.sweeps import load_sweep

    aggs = {}
    for name in RECIPES:
        runs, unfinished, _ = load_sweep(out / name)
        for run_dir in unfinished:
            print(f"note: {run_dir} has no results.json (not finished): left out", file=sys.stderr)
        if runs:
            aggs[name] = aggregate([{k: r[k] for k in ("seed", "bits", "results")} for r in runs])
        else:
            print(f"note: no finished run under {out / name}: left out", file=sys.stderr)
    return aggs


def _recipe_rows(bits: int, name: str, group: dict, directions: list[str]) -> list[str]:
    """The two rows (epoch chosen on validation, on the queries) of one recipe at one length."""
    from cmh.evaluation.seed_table import MISSING, format_mean_std

    n = len(group["seeds"])
    seeds = " ".join(str(s) for s in group["seeds"])
    rows = []
    for chosen_on, stat in ((VALIDATION, "map"), (QUERIES, "seed_protocol_map")):
        cells = [
            format_mean_std(group["stats"][d][stat], n) if d in group["stats"] else MISSING
            for d in directions
        ]
        rows.append(
            f"| {bits} | {RECIPES[name]} | {chosen_on} | {seeds} | " + " | ".join(cells) + " |"
        )
    return rows


def comparison_markdown(aggs: dict[str, dict]) -> str:
    """The comparison table (markdown) of the aggregates of :func:`load_aggregates`."""
    from cmh.evaluation.seed_table import MISSING

    groups = {(name, g["bits"]): g for name, agg in aggs.items() for g in agg["code_lengths"]}
    lengths = sorted({bits for _, bits in groups} | set(PUBLISHED))
    directions = []
    for g in groups.values():
        directions += [d for d in g["directions"] if d not in directions]
    directions = directions or ["i2t", "t2i"]
    lines = [
        "| bits | recipe | epoch chosen on | seeds | "
        + " | ".join(d.upper() for d in directions)
        + " |",
        "|---:|---|---|---|" + "---:|" * len(directions),
    ]
    for bits in lengths:
        for name in RECIPES:
            if (name, bits) in groups:
                lines += _recipe_rows(bits, name, groups[name, bits], directions)
        for what, chosen_on, maps in PUBLISHED.get(bits, []):
            cells = [f"{maps[d]:.4f}" if d in maps else MISSING for d in directions]
            lines.append(
                f"| {bits} | {what} | {chosen_on} | {MISSING} | " + " | ".join(cells) + " |"
            )
    legend = (
        "mAP with ties in Hamming distance broken by index; mean ± sample std over seeds "
        "(n/a with one seed). Epoch chosen on the validation split: this project's protocol. "
        "On the queries (optimistic): the reference's protocol (`--query-every`), which picks "
        f"the epoch on the test queries themselves, as the published reference number does; {MISSING} "
        "where the runs did not record it."
    )
    return "\n".join(["## Reference recipe vs default recipe", "", *lines, "", legend, ""])


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the comparison and write OUT/comparison.md."""
    from cmh.utils.cli import Parser

    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out", type=Path, help="the folder holding seed-recipe/ and default-recipe/"
    )
    args = parser.parse_args(argv)
    aggs = load_aggregates(args.out)
    if not aggs:
        print(
            f"error: no finished run under {args.out}/seed-recipe or {args.out}/default-recipe "
            "(run scripts/reproduce_seed.sh first)",
            file=sys.stderr,
        )
        return 2
    text = comparison_markdown(aggs)
    (args.out / "comparison.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'comparison.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
