"""One table of the objectives compared by scripts/compare_objectives.sh: OUT/results.md and OUT/results.json.

    python scripts/objective_results.py OUT

reads the run folders under OUT/{triplet-reference,triplet-all,dcmh,proxy}/: bits{B}/ (one seed) or
bits{B}/seed{S}/ (scripts/run_all_bits.sh --seeds), each with results.json, args.json and
metrics.jsonl. Writes OUT/results.md (printed too) and OUT/results.json: per objective and code
length, the mean ± sample std over the seeds (n/a with one) of the validation score of the
chosen epoch (the mean of its validation mAPs: what selected it), of every direction the runs report
(I2T and T2I, or T2T for text-only runs) with the epoch chosen on the validation split (this
project's protocol) and tie-averaged, the same chosen on the queries where the runs measured
them (--query-every: the reference's protocol, optimistic, never used for selection), the
chance level, the chosen epochs, the optimiser, and the training time per run (the mean over
the seeds of the sum of the epochs' seconds in metrics.jsonl: validation and query measurements
included, feature extraction and the final evaluation not). A run folder without results.json
is named on stderr and left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cmh.evaluation.seed_table import MISSING, aggregate, format_mean_std, mean_std
from cmh.runs.sweeps import BITS_FOLDER, load_run, load_sweep
from cmh.utils.atomic_io import write_text_atomic

OBJECTIVES = ("triplet-reference", "triplet-all", "dcmh", "proxy")  # compare_objectives.sh's


def runs_of(folder: Path) -> list[dict]:
    """The finished runs of one objective's folder, either layout; unfinished ones named."""
    runs, unfinished, _ = load_sweep(folder)  # bits{B}/seed{S}
    for bits_dir in sorted(folder.glob("bits*")):  # bits{B} itself a run folder (one seed)
        match = BITS_FOLDER.match(bits_dir.name)
        if match and (bits_dir / "args.json").is_file():
            run = load_run(bits_dir, int(match.group(1)))
            (runs.append(run) if run is not None else unfinished.append(bits_dir))
    for run_dir in unfinished:
        print(f"{run_dir}: no results.json (not finished); left out", file=sys.stderr)
    return runs


def run_facts(run_dir: Path, best_epoch: int) -> dict:
    """Training seconds (sum of the epochs' seconds), epochs, optimiser and the validation score
    of the chosen epoch (the mean of its validation mAPs, ties by index) of one run folder."""
    args = json.loads((run_dir / "args.json").read_text())
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines if x]
    seconds = sum(r.get("seconds", 0.0) for r in records)
    chosen = next((r for r in records if r["epoch"] == best_epoch), {})
    maps = [v for k, v in chosen.items() if k.startswith("val_map_") and not k.endswith("tie_avg")]
    optimiser = (f"{args['solver']} lr {args['lr']:g} ({args['lr_schedule']}), "
                 f"batch {args['batch_size']}")  # fmt: skip
    validation = sum(maps) / len(maps) if maps else None
    return {"seconds": seconds, "epochs": args["epochs"], "optimiser": optimiser,
            "validation": validation}  # fmt: skip


def rows_of(name: str, runs: list[dict]) -> list[dict]:
    """One row per code length: the seed aggregate plus chance, epochs, optimiser and time."""
    rows = []
    for group in aggregate(runs)["code_lengths"]:
        mine = sorted((r for r in runs if int(r["bits"]) == group["bits"]), key=lambda r: r["seed"])
        facts = [run_facts(Path(r["run"]), r["results"]["best_epoch"]) for r in mine]
        first = group["directions"][0]
        rows.append({
            "objective": name,
            **group,
            "validation": mean_std(f["validation"] for f in facts if f["validation"] is not None),
            "chance": group["per_seed"][0][f"chance_{first}"],
            "best_epochs": [s["best_epoch"] for s in group["per_seed"]],
            "epochs": sorted({f["epochs"] for f in facts}),
            "optimiser": sorted({f["optimiser"] for f in facts}),
            "train_seconds": sum(f["seconds"] for f in facts) / len(facts),
            "runs": [r["run"] for r in mine],
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    """The markdown table: one line per objective and code length."""
    directions = []
    for r in rows:
        directions += [d for d in r["directions"] if d not in directions]
    queries = any(r["stats"][d]["seed_protocol_map"]["n"] for r in rows for d in r["directions"])
    measures = [("map", "{D}"), ("map_tie_avg", "{D} tie-avg")]
    if queries:
        measures.append(("seed_protocol_map", "{D} chosen on queries"))
    head = [label.format(D=d.upper()) for _, label in measures for d in directions]
    lines = [
        "| objective | bits | seeds | validation | " + " | ".join(head)
        + " | chance | epoch chosen (of) | optimiser | training time per run |",
        "|---|---:|---|" + "---:|" * (len(head) + 2) + "---|---|---:|",
    ]  # fmt: skip
    for r in rows:
        n = len(r["seeds"])
        cells = [format_mean_std(r["stats"][d][m], n) if d in r["stats"] else MISSING
                 for m, _ in measures for d in directions]  # fmt: skip
        epochs = f"{', '.join(map(str, r['best_epochs']))} ({'/'.join(map(str, r['epochs']))})"
        lines.append(
            f"| {r['objective']} | {r['bits']} | {' '.join(map(str, r['seeds']))} | "
            f"{format_mean_std(r['validation'], n)} | " + " | ".join(cells)
            + f" | {r['chance']:.4f} | {epochs} | {'; '.join(r['optimiser'])} | "
            f"{r['train_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    from cmh.utils.cli import Parser

    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder compare_objectives.sh wrote")
    out = parser.parse_args(argv).out
    rows = [row for name in OBJECTIVES for row in rows_of(name, runs_of(out / name))]
    if not rows:
        print(f"error: no finished run under {out}/{{{','.join(OBJECTIVES)}}}", file=sys.stderr)
        return 2
    text = table(rows) + "\n"
    write_text_atomic(out / "results.md", text)
    write_text_atomic(out / "results.json", json.dumps({"rows": rows}, indent=2) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
