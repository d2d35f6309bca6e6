"""The concurrency row of bench/gpu_check.py: N training processes stepping on one GPU at once.

At batch 32 one process leaves the GPU waiting on Python and kernel launches, so several
trainings at once (scripts/run_all_bits.sh --parallel N) can multiply the work done. Each
worker here is its own process, as each run of --parallel is: it builds the full-size model,
warms up (and captures, on the static path), then waits at a barrier (a file per ready worker)
so that the timed steps of all N overlap; it times ``steps`` steps with one synchronisation at
each end and writes its seconds per step and its start and end times. The row sums the
workers' pair rates, and says whether the timed windows did overlap.

    python bench/gpu_parallel.py --size full --batch 32 --path graph --rank 0 --count 3 \
        --barrier DIR --out DIR/worker0.json        # what concurrency_row starts, N times
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gpu_steps as steps
import torch

BARRIER_TIMEOUT_S = 900


def worker(size: dict, batch: int, path: str, bf16: bool, barrier: Path, rank: int, count: int):
    """One worker's measurement (see the module docstring)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, optimizer = steps.build(size, device)
    batches = steps.synthetic_batches(size, batch, device)
    first = next(batches)
    step = (
        steps.eager_step(model, optimizer, bf16)
        if path == "eager"
        else steps.static_step(model, optimizer, bf16, first, steps.TOKENS)
    )
    for _ in range(size["warmup"]):
        step(first)
    steps.sync(device)
    (barrier / f"ready{rank}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(barrier.glob("ready*"))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {rank}: not all {count} workers got ready in {barrier}")
        time.sleep(0.01)
    start = time.time()
    t0 = time.perf_counter()
    for _ in range(size["parallel_steps"]):
        out = step(next(batches))
    steps.sync(device)
    seconds = time.perf_counter() - t0
    return {"s_per_step": seconds / size["parallel_steps"], "start": start,
            "end": time.time(), "loss": float(out["loss"].detach())}  # fmt: skip


def concurrency_row(
    size: dict, batch: int, path: str, bf16: bool, count: int, tf32: bool = False
) -> dict:
    """Start ``count`` workers at once; their summed pair rate and the 9-run projection."""
    with tempfile.TemporaryDirectory() as folder:
        barrier = Path(folder)
        procs = []
        for rank in range(count):
            argv = [sys.executable, __file__, "--size", size["name"], "--batch", str(batch),
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


def main(argv=None) -> int:
    from cmh.cli import Parser

    p = Parser(description=__doc__)
    p.add_argument("--size", choices=tuple(steps.SIZES), required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--path", choices=("eager", "graph"), required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--barrier", type=Path, required=True, help="folder of the ready files")
    p.add_argument("--out", type=Path, required=True, help="this worker's JSON")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (default float32)")
    p.add_argument("--tf32", action="store_true", help="TF32 matmuls and convolutions")
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    size = steps.SIZES[args.size]
    result = worker(size, args.batch, args.path, args.bf16, args.barrier, args.rank, args.count)
    args.out.write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
