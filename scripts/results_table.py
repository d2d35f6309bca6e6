"""Print a markdown table (bits x I2T / T2I mAP, both tie policies) from run folders.

    python scripts/results_table.py RUN [RUN ...]

Each RUN must hold the results.json that train.py (or evaluate.py --out RUN) writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [
    ("map_i2t", "I2T"),
    ("map_t2i", "T2I"),
    ("map_i2t_tie_avg", "I2T tie-avg"),
    ("map_t2i_tie_avg", "T2I tie-avg"),
    ("chance_i2t", "chance"),
]


def table(runs: list[Path]) -> str:
    lines = [
        "| bits | margin | " + " | ".join(name for _, name in COLUMNS) + " | run |",
        "|---:|---:|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for run in runs:
        path = run / "results.json"
        if not path.is_file():
            raise SystemExit(f"error: {path} does not exist (did the run finish?)")
        r = json.loads(path.read_text())
        cells = [f"{r[key]:.4f}" if key in r else "-" for key, _ in COLUMNS]
        lines.append(
            f"| {r.get('bits', '?')} | {r.get('margin', '?')} | "
            + " | ".join(cells)
            + f" | {run} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    from cmh.utils.cli import Parser

    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding results.json")
    print(table(parser.parse_args(argv).runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
