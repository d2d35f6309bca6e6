"""Benchmark: vectorised hashing_loss vs brute-force triplet enumeration (forward + backward).

Run from anywhere:  python bench/bench_loss.py [--sizes 32 64 128] [--bits 32]

Prints the machine, then one table row per (mode, batch size): best-of-N times of the
vectorised loss and of the brute force (tests/loss_bruteforce.py, the only copy; timed once
when a single run takes over a second), their ratio, and the value difference. Then the
fraction of "reference" triplets whose anchor and positive share no label, on realistic labels.

Targets, checked on every row and printed beside it; the exit status is 1 when any is missed:

- values: |vectorised - brute force| <= --rtol x max(1, |brute force|) (default 1e-5: float32);
- speed: ratio brute / vectorised >= --min-ratio (default 10x) at batch >= --min-ratio-batch
  (default 32; smaller batches have too few triplets for vectorising to pay, so their ratio is
  information only). docs/benchmarks.md's claim is 25-50x at batch 32 and 160-990x at 128.

--inject-error EPS adds EPS to the vectorised value of the first row, to show that a mismatch
fails the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from cmh.objectives.triplet_loss import hashing_loss, label_similarity, reference_triplet_weights


def _bruteforce():
    """tests/loss_bruteforce.py, the one copy of the brute-force loss, loaded from its path."""
    path = Path(__file__).resolve().parents[1] / "tests" / "loss_bruteforce.py"
    spec = importlib.util.spec_from_file_location("loss_bruteforce", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_bf = _bruteforce()
IAPR_ITEMS = _bf.IAPR_ITEMS
brute_force_loss = _bf.brute_force_loss
iapr_label_sets = _bf.iapr_label_sets
multi_hot = _bf.multi_hot
zipf_label_sets = _bf.zipf_label_sets


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128], help="batch sizes")
    parser.add_argument("--bits", type=int, default=32, help="code length")
    parser.add_argument(
        "--modes", nargs="+", default=["all", "reference"], help="triplet modes to time"
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats; the best time is kept")
    parser.add_argument("--margin", type=float, default=8.0, help="hinge margin")
    parser.add_argument(
        "--labels",
        choices=["auto", "iapr", "zipf"],
        default="auto",
        help="label sets: IAPR TC-12 segment labels (auto: when present) or synthetic Zipf",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for labels and codes")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the brute force is single-threaded Python, and "
        "one thread is far less sensitive to other processes on a shared machine)",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-5,
        help="target: |vectorised - brute| <= rtol * max(1, |brute|) on every row (default 1e-5)",
    )
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=10.0,
        help="target: brute / vectorised time at least this (default 10) at large batches",
    )
    parser.add_argument(
        "--min-ratio-batch",
        type=int,
        default=32,
        help="the --min-ratio target applies from this batch size up (default 32)",
    )
    parser.add_argument(
        "--inject-error",
        type=float,
        default=0.0,
        help="add this to the first row's vectorised value (to test the failure path)",
    )
    return parser.parse_args(argv)


def label_sets_for(source: str, n_items: int, rng: np.random.Generator) -> list[set[int]]:
    """Realistic label sets: IAPR TC-12 items if asked (or auto and present), else Zipf."""
    if source in ("auto", "iapr"):
        sets = iapr_label_sets(n_items, rng)
        if sets is not None:
            return sets
        if source == "iapr":
            raise SystemExit(f"--labels iapr: {IAPR_ITEMS} not found (set IAPR_TC12_META)")
    return zipf_label_sets(n_items, rng)


def best_time(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(best seconds, last value) after a warm-up: one run if slow (> 1 s), 4x repeats if fast."""
    start = time.perf_counter()
    value = fn()  # warm-up
    first = time.perf_counter() - start
    if first > 1.0:
        return first, value
    best = first
    for _ in range(repeats if first > 0.05 else 4 * repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def _forward_backward(loss_fn, image: torch.Tensor, text: torch.Tensor) -> Callable[[], float]:
    def run() -> float:
        i, t = image.clone().requires_grad_(), text.clone().requires_grad_()
        loss = loss_fn(i, t)
        loss.backward()
        return loss.item()

    return run


def time_row(args: argparse.Namespace, mode: str, n_items: int, inject: float = 0.0) -> dict:
    """Times and values of both implementations on one batch; ``inject`` is added to the value."""
    rng = np.random.default_rng(args.seed + n_items)
    label_sets = label_sets_for(args.labels, n_items, rng)
    labels = multi_hot(label_sets)
    gen = torch.Generator().manual_seed(args.seed + n_items)
    image = torch.tanh(2.0 * torch.randn(n_items, args.bits, generator=gen))
    text = torch.tanh(2.0 * torch.randn(n_items, args.bits, generator=gen))

    def vectorised(i, t):
        return hashing_loss(i, t, labels, args.margin, triplets=mode)["loss"]

    def brute(i, t):
        return brute_force_loss(i, t, label_sets, args.margin, mode)

    t_vec, v_vec = best_time(_forward_backward(vectorised, image, text), args.repeats)
    t_bf, v_bf = best_time(_forward_backward(brute, image, text), args.repeats)
    return {"t_vec": t_vec, "t_bf": t_bf, "v_vec": v_vec + inject, "v_bf": v_bf}


def row_line(args: argparse.Namespace, mode: str, n_items: int, r: dict) -> tuple[str, bool]:
    """The table row with each target beside its measurement, and whether all are met."""
    ratio = r["t_bf"] / r["t_vec"]
    diff, tol = abs(r["v_vec"] - r["v_bf"]), args.rtol * max(1.0, abs(r["v_bf"]))
    if n_items >= args.min_ratio_batch:
        speed_met = ratio >= args.min_ratio
        speed = f"{ratio:>6.1f}x (>= {args.min_ratio:g}x): {'met' if speed_met else 'MISSED'}"
    else:
        speed_met, speed = True, f"{ratio:>6.1f}x (no target below {args.min_ratio_batch})"
    value_met = diff <= tol
    value = f"{diff:>9.1e} (<= {tol:.1e}): {'met' if value_met else 'MISSED'}"
    times = f"{r['t_vec'] * 1e3:>12.2f} {r['t_bf'] * 1e3:>14.1f}"
    return f"{mode:<10} {n_items:>5} {times}  {speed:<30} {value}", speed_met and value_met


def unrelated_fraction(label_sets: list[set[int]]) -> float:
    """Fraction of the "reference" triplet multiset whose anchor and positive share no label."""
    similar = label_similarity(multi_hot(label_sets))
    weights = reference_triplet_weights(similar).double()
    return float((weights * ~similar[:, :, None]).sum() / weights.sum())


def fraction_report(sizes: Sequence[int], seed: int, n_batches: int = 20) -> list[str]:
    lines = []
    for source in ("iapr", "zipf"):
        rng = np.random.default_rng(seed)
        if source == "iapr" and iapr_label_sets(1, rng) is None:
            lines.append("iapr: metadata not present, skipped")
            continue
        for n_items in sizes:
            sampler = iapr_label_sets if source == "iapr" else zipf_label_sets
            fracs = [unrelated_fraction(sampler(n_items, rng)) for _ in range(n_batches)]
            lines.append(
                f"{source:<5} batch {n_items:>4}: {np.mean(fracs):.3f} "
                f"(sd {np.std(fracs):.3f} over {n_batches} batches)"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"forward+backward of all four terms, bits {args.bits}, labels {args.labels}, float32")
    if args.inject_error:
        print(f"--inject-error: {args.inject_error:g} added to the first row's vectorised value")
    header = f"{'vector (ms)':>12} {'brute (ms)':>14}  {'ratio (target)':<30} |diff| (target)"
    print(f"{'triplets':<10} {'batch':>5} {header}")
    missed = []
    for mode in args.modes:
        for n_items in args.sizes:
            first = (mode, n_items) == (args.modes[0], args.sizes[0])
            inject = args.inject_error if first else 0.0
            line, met = row_line(args, mode, n_items, time_row(args, mode, n_items, inject))
            print(line, flush=True)
            if not met:
                missed.append(f"{mode} batch {n_items}")
    print('fraction of "reference" triplets whose anchor and positive share no label:')
    for line in fraction_report(args.sizes, args.seed):
        print("  " + line)
    if missed:
        print(f"FAIL: target missed in {len(missed)} row(s): {', '.join(missed)}", file=sys.stderr)
        return 1
    print(f"OK: every row within its targets ({len(args.modes) * len(args.sizes)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
