"""Epoch time of full fine-tuning versus frozen-feature mode (--freeze-backbones), one run.

    python bench/bench_frozen.py                          # the demo dataset and demo settings
    python bench/bench_frozen.py --data DIR -- --image-size 224 ...   # extra train.py flags

Trains each mode for 2 epochs with validation only at the end, and reads the first epoch's time
from metrics.jsonl (pure training: forward, loss, backward, step, data loading). The one-time
feature extraction of frozen mode is reported apart (total wall time minus the two epochs is
set-up, validation and final evaluation for both modes).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from cmh.utils.entry_points import run_entry_point


def one_mode(flags: list[str], out: Path) -> dict:
    t0 = time.perf_counter()
    if run_entry_point("train", [*flags, "--out", str(out), "--epochs", "2", "--eval-every", "2"]) != 0:
        raise SystemExit(f"error: python train.py {' '.join(flags)} failed")
    wall = time.perf_counter() - t0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return {"epoch_seconds": first["seconds"], "wall_seconds": wall}


def main(argv=None) -> int:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__)
    p.add_argument("--data", help="prepared dataset (default: the demo dataset, via --demo)")
    p.add_argument("extra", nargs="*", help="extra train.py flags (after --)")
    args = p.parse_args(argv)
    base = ["--data", args.data] if args.data else ["--demo"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        full = one_mode([*base, *args.extra], Path(tmp) / "full")
        frozen = one_mode(
            [
                *base,
                *args.extra,
                "--freeze-backbones",
                "--feature-cache",
                str(Path(tmp) / "features"),
            ],
            Path(tmp) / "frozen",
        )
    for name, r in (("full fine-tuning", full), ("frozen features", frozen)):
        print(
            f"{name:<18} epoch {r['epoch_seconds']:8.2f} s   whole 2-epoch run "
            f"{r['wall_seconds']:8.1f} s"
        )
    print(f"epoch time ratio full / frozen: {full['epoch_seconds'] / frozen['epoch_seconds']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
