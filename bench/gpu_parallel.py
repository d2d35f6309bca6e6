"""The concurrency row of bench/gpu_check.py: N training processes stepping on one GPU at once.

At batch 32 one process leaves the GPU waiting on Python and kernel launches, so several
trainings at once (scripts/run_all_bits.sh --parallel N) can multiply the work done. Each
worker here is its own process, as each run of --parallel is: it builds the full-size model,
warms up (and captures, on the static path), then waits at a barrier (a file per ready worker)
so that the timed steps of all N overlap; it times ``steps`` steps with one synchronisation at
each end and writes its seconds per step and its start and end times. The row sums the
workers' pair rates, and says whether the timed windows did overlap.

    python bench/gpu_worker.py --size full --batch 32 --path graph --rank 0 --count 3 \
        --barrier DIR --out DIR/worker0.json        # bench/gpu_worker.py: what concurrency_row starts, N times
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = Path(__file__).with_name("gpu_worker.py")  # one training process of the row


def concurrency_row(
    size: dict, batch: int, path: str, bf16: bool, count: int, tf32: bool = False
) -> dict:
    """Start ``count`` workers at once; their summed pair rate and the 9-run projection."""
    with tempfile.TemporaryDirectory() as folder:
        barrier = Path(folder)
        procs = []
        for rank in range(count):
            argv = [sys.executable, str(WORKER), "--size", size["name"], "--batch", str(batch),
                    "--path", path, "--rank", str(rank), "--count", str(count),
                    "--barrier", folder, "--out", str(barrier / f"worker{rank}.json"),
                    *(["--bf16"] if bf16 else []), *(["--tf32"] if tf32 else [])]  # fmt: skip
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))  # fmt: skip
        logs = [p.communicate()[0] for p in procs]
        for rank, (p, log) in enumerate(zip(procs, logs, strict=True)):
            if p.returncode != 0:
                raise RuntimeError(f"concurrency worker {rank} of {count} failed:\n{log[-3000:]}")
        workers = [json.loads((barrier / f"worker{r}.json").read_text()) for r in range(count)]
    total = sum(batch / w["s_per_step"] for w in workers)
    return {
        "processes": count,
        "batch": batch,
        "path": path,
        "bf16": bf16,
        "ms_per_step_each": [w["s_per_step"] * 1e3 for w in workers],
        "pairs_per_s_total": total,
        "overlapped": max(w["start"] for w in workers) < min(w["end"] for w in workers),
        "hours_9_runs_300_epochs_10k": 9 * 300 * 10_000 / total / 3600,
    }
