"""One worker of bench/gpu_parallel.py's concurrency row: builds the model, warms up, waits at the
barrier, times its steps and writes its JSON (started N times at once by concurrency_row).

    python bench/gpu_worker.py --size full --batch 32 --path graph --rank 0 --count 3 \
        --barrier DIR --out DIR/worker0.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import gpu_steps as steps  # bench/gpu_steps.py, beside this file
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


def main(argv=None) -> int:
    from cmh.utils.cli import Parser

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
