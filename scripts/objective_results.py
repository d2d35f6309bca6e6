"""One table of the objectives compared by scripts/compare_objectives.sh.

    python scripts/objective_results.py OUT

reads OUT/{triplet,dcmh}/bits{B}/results.json (and each run's args.json and metrics.jsonl) and
writes OUT/results.md (printed too) and OUT/results.json: per objective and code length the mAP
of every direction the runs report (I2T and T2I, or T2T for text-only runs) under both tie
policies, the chance level, the selected (validation) epoch, the optimiser, and the training
time (the sum of the epochs' seconds in metrics.jsonl: validation included, feature extraction
and the final evaluation not). A run folder without results.json is named on stderr and left out.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OBJECTIVES = ("triplet", "dcmh")
DIRECTIONS = ("i2t", "t2i", "t2t", "i2i")
BITS_FOLDER = re.compile(r"bits(\d+)$")


def load_row(objective: str, run: Path) -> dict | None:
    """The table row of one finished run folder; None without results.json."""
    if not (run / "results.json").is_file():
        return None
    results = json.loads((run / "results.json").read_text())
    args = json.loads((run / "args.json").read_text()) if (run / "args.json").is_file() else {}
    seconds = 0.0
    if (run / "metrics.jsonl").is_file():
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
        seconds = sum(r.get("seconds", 0.0) for r in records)
    directions = [d for d in DIRECTIONS if f"map_{d}" in results]
    return {
        "objective": objective,
        "bits": results["bits"],
        "maps": {d: results[f"map_{d}"] for d in directions},
        "maps_tie_avg": {d: results[f"map_{d}_tie_avg"] for d in directions},
        "chance": results[f"chance_{directions[0]}"],
        "best_epoch": results["best_epoch"],
        "epochs": args.get("epochs"),
        "optimizer": f"{args.get('solver', '?')} lr {args.get('lr', '?'):g} "
        f"({args.get('lr_schedule', '?')}), batch {args.get('batch_size', '?')}",
        "train_seconds": round(seconds, 1),
        "run": str(run),
    }


def collect(out: Path) -> list[dict]:
    """Every finished run under OUT/{triplet,dcmh}/bits*, by objective then code length."""
    rows = []
    for objective in OBJECTIVES:
        runs = [p for p in (out / objective).glob("bits*") if BITS_FOLDER.match(p.name)]
        for run in sorted(runs, key=lambda p: int(BITS_FOLDER.match(p.name).group(1))):
            row = load_row(objective, run)
            if row is None:
                print(f"{run}: no results.json (not finished); left out", file=sys.stderr)
            else:
                rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """The markdown table: one line per objective and code length."""
    directions = [d for d in DIRECTIONS if any(d in r["maps"] for r in rows)]
    head = [d.upper() for d in directions] + [f"{d.upper()} tie-avg" for d in directions]
    lines = [
        "| objective | bits | " + " | ".join(head) + " | chance | epoch (of) | optimiser | "
        "training time |",
        "|---|---:|" + "---:|" * (len(head) + 2) + "---|---:|",
    ]
    for r in rows:
        cells = [r["maps"].get(d) for d in directions] + [
            r["maps_tie_avg"].get(d) for d in directions
        ]
        shown = " | ".join("-" if c is None else f"{c:.4f}" for c in cells)
        lines.append(
            f"| {r['objective']} | {r['bits']} | {shown} | {r['chance']:.4f} | "
            f"{r['best_epoch']} ({r['epochs']}) | {r['optimizer']} | "
            f"{r['train_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    rows = collect(out)
    if not rows:
        print(f"error: no finished run under {out}/triplet or {out}/dcmh", file=sys.stderr)
        return 2
    text = table(rows) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
