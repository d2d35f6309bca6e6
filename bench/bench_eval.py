"""Benchmark: exact Hamming-ranking mAP (cmh/evaluation/hamming_metrics.py) against a per-query reference loop.

Times ``metrics.mean_average_precision`` (ties="index" and ties="average") on a realistic
IAPR TC-12-sized evaluation (2,000 queries x 18,000 database items, 64 bits) and the per-query
numpy loop used by DCMH-style ``calc_map`` (with a stable argsort, so it ranks ties by index).

Targets, each printed beside its measurement; the exit status is 1 when any is missed:

- the ties="index" mAP equals the loop's to ``--tolerance`` (default 1e-9);
- each tie policy takes at most ``--target-seconds`` (default 1 s, set for the default
  2,000 x 18,000 x 64 bits: an evaluation a person waits for).

The speed-up over the loop is printed as information only: the loop's time depends heavily on
what else the machine runs (8-14x on the idle reference machine). ``--inject-error EPS`` adds EPS
to the ties="index" value before the comparison, to show that a mismatch fails the run.

Labels are synthetic (255 classes, Zipf-like frequencies, ~4 per item) unless ``--meta DIR``
points at a folder with ``items.jsonl`` and ``label_names.txt`` (e.g. the shared IAPR TC-12
metadata). Codes are ``sign(labels @ W + noise)`` for a random Gaussian ``W``, so the ranking
carries signal and realistic tie groups.

    python bench/bench_eval.py [--nq 2000] [--nd 18000] [--bits 64] [--meta DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nq", type=int, default=2000, help="number of queries")
    p.add_argument("--nd", type=int, default=18000, help="number of database items")
    p.add_argument("--bits", type=int, default=64, help="code length in bits")
    p.add_argument("--classes", type=int, default=255, help="synthetic label classes")
    p.add_argument("--labels-per-item", type=float, default=4.0, help="mean synthetic labels/item")
    p.add_argument("--noise", type=float, default=2.0, help="std of noise added before sign()")
    p.add_argument("--meta", type=Path, default=None, help="folder with items.jsonl (real labels)")
    p.add_argument(
        "--repeat", type=int, default=3, help="timed runs of cmh/evaluation/hamming_metrics.py (best kept)"
    )
    p.add_argument("--seed", type=int, default=0, help="RNG seed")
    p.add_argument(
        "--target-seconds",
        type=float,
        default=1.0,
        help="target: best wall time of each tie policy at most this (default 1 s)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-9,
        help="target: |ties='index' mAP - reference loop mAP| at most this (default 1e-9)",
    )
    p.add_argument(
        "--inject-error",
        type=float,
        default=0.0,
        help="add this to the ties='index' mAP before the comparison (to test the failure path)",
    )
    args = p.parse_args(argv)
    for flag in ("nq", "nd", "bits", "classes", "repeat"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1; found {getattr(args, flag)}")
    return args


def synthetic_labels(n: int, classes: int, mean_labels: float, rng) -> np.ndarray:
    """Multi-hot ``[n, classes]`` uint8: 1 + Poisson(mean-1) labels per item, Zipf(1) weights.

    Labels are drawn without replacement by the Gumbel top-k trick.
    """
    log_p = -np.log(np.arange(1, classes + 1))
    keys = log_p + rng.gumbel(size=(n, classes))
    k = np.minimum(1 + rng.poisson(mean_labels - 1, size=n), classes)
    ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
    return (ranks < k[:, None]).astype(np.uint8)


def meta_labels(folder: Path, nq: int, nd: int, rng) -> np.ndarray:
    """Multi-hot ``[nq + nd, C]`` uint8 from the segment labels of random ``items.jsonl`` items."""
    from cmh.utils.errors import UserError

    items_path, names_path = folder / "items.jsonl", folder / "label_names.txt"
    for path in (items_path, names_path):
        if not path.is_file():
            raise UserError(f"--meta {folder}: missing {path.name}")
    names = names_path.read_text(encoding="utf-8").split()
    column = {name: i for i, name in enumerate(names)}
    rows = []
    with items_path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            item = json.loads(line)
            unknown = set(item["segment_labels"]) - column.keys()
            if unknown:
                raise UserError(f"{items_path}:{line_no}: labels not in label_names.txt: {unknown}")
            rows.append([column[name] for name in set(item["segment_labels"])])
    n = nq + nd
    if n > len(rows):
        raise UserError(
            f"--nq + --nd = {n} but {items_path} has only {len(rows)} items; "
            f"lower them (e.g. --nd {len(rows) - nq})"
        )
    labels = np.zeros((n, len(names)), dtype=np.uint8)
    for out_row, src in enumerate(rng.permutation(len(rows))[:n]):
        labels[out_row, rows[src]] = 1
    return labels


def codes_from_labels(labels: np.ndarray, bits: int, noise: float, rng) -> np.ndarray:
    """±1 int8 codes ``[n, bits]``: sign of a random projection of the labels plus noise."""
    proj = labels.astype(np.float32) @ rng.standard_normal((labels.shape[1], bits), np.float32)
    proj += noise * rng.standard_normal(proj.shape, np.float32)
    return np.where(proj >= 0, 1, -1).astype(np.int8)


def reference_map(qb: np.ndarray, rb: np.ndarray, ql: np.ndarray, rl: np.ndarray) -> float:
    """Per-query mAP as in DCMH's ``calc_map``, with a stable argsort (ties by index)."""
    qb, rb = qb.astype(np.float32), rb.astype(np.float32)
    ql, rl = ql.astype(np.float32), rl.astype(np.float32)
    total = 0.0
    for i in range(qb.shape[0]):
        gnd = (ql[i] @ rl.T > 0).astype(np.float32)
        tsum = int(gnd.sum())
        if tsum == 0:
            continue  # AP 0, still counted in the division below
        hamm = 0.5 * (qb.shape[1] - qb[i] @ rb.T)
        gnd = gnd[np.argsort(hamm, kind="stable")]
        count = np.arange(1, tsum + 1, dtype=np.float64)
        tindex = np.flatnonzero(gnd == 1) + 1.0
        total += float(np.mean(count / tindex))
    return total / qb.shape[0]


def best_time(fn, repeat: int) -> tuple[float, float, float]:
    """(best wall seconds, best CPU seconds of this process, value) over ``repeat`` runs."""
    wall, cpu = [], []
    for _ in range(repeat):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        value = fn()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu), value


def main(argv: list[str] | None = None) -> int:
    from cmh.utils.errors import UserError

    args = parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def check(measured: float, target: float, label: str, unit: str = "") -> tuple[str, bool]:
    """A ``"<label> (target <= <target>): met|MISSED"`` line and whether ``measured <= target``."""
    met = measured <= target
    return f"{label} (target <= {target:g}{unit}): {'met' if met else 'MISSED'}", met


def run(args: argparse.Namespace) -> int:
    """Build the data, time both implementations, print each target; 0 if all are met."""
    from cmh.evaluation.hamming_metrics import chance_level, mean_average_precision

    rng = np.random.default_rng(args.seed)
    n = args.nq + args.nd
    if args.meta is not None:
        labels = meta_labels(args.meta, args.nq, args.nd, rng)
        source = f"{args.meta}/items.jsonl"
    else:
        labels = synthetic_labels(n, args.classes, args.labels_per_item, rng)
        source = "synthetic Zipf"
    codes = codes_from_labels(labels, args.bits, args.noise, rng)
    qc, dc, ql, dl = codes[: args.nq], codes[args.nq :], labels[: args.nq], labels[args.nq :]

    print(f"machine: {platform.machine()} {platform.processor() or ''}".rstrip())
    print(
        f"cpu_count: {os.cpu_count()}  python: {platform.python_version()}  numpy: {np.__version__}"
        f"  load average (1 min): {os.getloadavg()[0]:.2f}"
    )
    print(
        f"data: {args.nq} queries x {args.nd} database items, {args.bits} bits, "
        f"{labels.shape[1]} classes ({source}), {labels.sum(1).mean():.2f} labels/item"
    )
    print(f"chance level (mean relevant fraction): {chance_level(ql, dl):.6f}")

    runs = {
        "cmh/evaluation/hamming_metrics.py ties='index'  ": (
            lambda: mean_average_precision(qc, dc, ql, dl) + args.inject_error,
            args.repeat,
        ),
        "cmh/evaluation/hamming_metrics.py ties='average'": (
            lambda: mean_average_precision(qc, dc, ql, dl, ties="average"),
            args.repeat,
        ),
        "per-query reference loop ": (lambda: reference_map(qc, dc, ql, dl), 1),
    }
    if args.inject_error:
        print(f"--inject-error: {args.inject_error:g} added to the ties='index' mAP")
    results = {}
    for name, (fn, repeat) in runs.items():
        results[name] = best_time(fn, repeat)
        wall, cpu, value = results[name]
        print(f"{name}: mAP {value:.12f}  wall {wall:7.3f} s  cpu {cpu:7.3f} s  (best of {repeat})")
    (t_index, c_index, map_index), (t_avg, _, _), (t_ref, c_ref, map_ref) = results.values()
    diff = abs(map_index - map_ref)
    checks = [
        check(diff, args.tolerance, f"|index - reference| = {diff:.3e}"),
        check(t_index, args.target_seconds, f"ties='index' wall {t_index:.3f} s", " s"),
        check(t_avg, args.target_seconds, f"ties='average' wall {t_avg:.3f} s", " s"),
    ]
    for line, _ in checks:
        print(line)
    print(
        f"speed-up (reference / ties='index'): wall {t_ref / t_index:.1f}x, "
        f"cpu {c_ref / c_index:.1f}x (information, no target; cpu time sums all threads)"
    )
    missed = [line for line, met in checks if not met]
    if missed:
        print("FAIL: target missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    print(
        f"OK: ties='index' mAP identical to the reference (to {args.tolerance:g}); "
        f"both tie policies within {args.target_seconds:g} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
