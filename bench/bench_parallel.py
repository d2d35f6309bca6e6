"""Several trainings at once on the CPU: scripts/run_all_bits.sh --parallel N against the same
runs one after the other, timed in one command.

    python bench/bench_parallel.py                        # demo data, 2 code lengths, 2 epochs
    python bench/bench_parallel.py --parallel 2 --bits 16 32 -- --epochs 1   # extra train.py flags

Runs the sweep three ways on the same prepared data (the demo dataset unless --data): one at a
time (torch's default threads: one per core), --parallel N with each training's share of the
cores (what run_all_bits.sh does: nproc / N threads each), and --parallel N with every training
taking every core (OMP_NUM_THREADS = nproc, the behaviour before the share). Prints the wall
time of each and its ratio to one at a time; every way's results.json must hold the same
code lengths (the mAPs differ only where the thread counts do: a reduction over another number
of threads adds in another order).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_FLAGS = ["--epochs", "2", "--no-progress"]


def sweep(out: Path, parallel: int, data: list[str], bits: list[str], flags: list[str],
          threads: str | None) -> float:  # fmt: skip
    """Wall seconds of one run_all_bits.sh sweep; exits naming it when it fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = threads
    argv = ["bash", str(ROOT / "scripts/run_all_bits.sh"), str(out), "--parallel", str(parallel),
            "--bits", *bits, *data, *flags]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    for b in bits:
        results = json.loads((out / f"bits{b}" / "results.json").read_text())
        assert results["bits"] == int(b)
    return seconds


def main(argv=None) -> int:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="prepared dataset (default: the demo dataset, via --demo)")
    p.add_argument("--parallel", type=int, default=2, help="trainings at once (default 2)")
    p.add_argument("--bits", nargs="+", default=["16", "32"], help="code lengths (default 16 32)")
    p.add_argument("extra", nargs="*", help=f"train.py flags after -- (default {DEMO_FLAGS})")
    args = p.parse_args(argv)
    data = ["--data", args.data] if args.data else ["--demo"]
    flags = args.extra or DEMO_FLAGS
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {platform.machine()}, {cores} cores, load average {os.getloadavg()[0]:.2f}; "
          f"{len(args.bits)} trainings: {' '.join(data + flags)}")  # fmt: skip
    share = max(1, cores // args.parallel)
    ways = [
        ("one at a time (one thread per core)", 1, None),
        (f"--parallel {args.parallel}, {share} thread(s) each (the share)", args.parallel, None),
        (f"--parallel {args.parallel}, {cores} threads each (every core)", args.parallel, str(cores)),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, parallel, threads) in enumerate(ways):
            seconds = sweep(Path(tmp) / f"way{i}", parallel, data, args.bits, flags, threads)
            rows.append((name, seconds))
    print("| how | wall (s) | / one at a time |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / rows[0][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
