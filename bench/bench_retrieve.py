"""Benchmark: retrieve.py's FAISS binary indexes (flat, HNSW, IVF, MIH) at one and ten million codes.

For each database size it builds every index kind with binary_index.build_index (parameters from
binary_index.choose_params, as `retrieve.py index` chooses them, unless given) and reports the
build time, the index's size in memory (the bytes faiss.serialize_index_binary writes: codes,
lists, graph), queries per second for --queries queries in one batch, the median time of one
query alone (--single of them), and recall@k against exact search. Recall counts ties: the
fraction of the k returned items whose distance is at most the exact k-th distance.

Codes: --codes clustered (default) draws --centres random centres, then each code is a centre
with every bit flipped with probability --flip (learned codes cluster by class the same way:
items of a class share most bits); queries are new draws of the same kind, none of them in the
database. --codes random: uniform random codes (no structure, the worst case for HNSW, IVF and
MIH). The database is generated in chunks of a million, so ten million 64-bit codes take 80 MB.

    python bench/bench_retrieve.py [--sizes 1000000 10000000] [--bits 64] [--kinds flat hnsw ivf mih]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="database sizes")
    p.add_argument("--bits", type=int, default=64, help="code length (a multiple of 8)")
    p.add_argument("--codes", choices=("clustered", "random"), default="clustered", help="how codes are made")
    p.add_argument("--centres", type=int, default=4096, help="clustered: number of centres")
    p.add_argument("--flip", type=float, default=0.05, help="clustered: probability of each bit flipped")
    p.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf", "mih"], help="index kinds")
    p.add_argument("--queries", type=int, default=1000, help="queries in the batch")
    p.add_argument("--single", type=int, default=50, help="one-at-a-time queries timed")
    p.add_argument("--k", type=int, default=10, help="results per query")
    p.add_argument("--hnsw-m", type=int, default=16, help="HNSW neighbours per node")
    p.add_argument("--ef-construction", type=int, default=20, help="HNSW build beam width")
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 256], help="HNSW beams")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32], help="IVF lists probed")
    p.add_argument("--nflip", type=int, nargs="+", default=[0, 1, 2], help="MIH bits flipped per substring")
    p.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed")
    args = p.parse_args(argv)
    if args.bits % 8 or args.bits < 8 or min(args.sizes) <= args.k or args.k < 1:
        p.error("--bits must be a positive multiple of 8 and every size larger than --k >= 1")
    if set(args.kinds) - {"flat", "hnsw", "ivf", "mih"} or "flat" not in args.kinds:
        p.error("--kinds: some of flat hnsw ivf mih, flat among them (recall is measured against it)")
    return args


def make_codes(n: int, args: argparse.Namespace, rng, centres: np.ndarray | None) -> np.ndarray:
    """n packed codes uint8 [n, bits/8], made as --codes says, a million at a time."""
    out = np.empty((n, args.bits // 8), np.uint8)
    for start in range(0, n, 1_000_000):
        m = min(1_000_000, n - start)
        if centres is None:
            out[start : start + m] = rng.integers(0, 256, (m, args.bits // 8), dtype=np.uint8)
            continue
        flips = np.packbits(rng.random((m, args.bits), dtype=np.float32) < args.flip, axis=1)
        out[start : start + m] = centres[rng.integers(0, len(centres), m)] ^ flips
    return out


def timed_search(binary_index, index, queries: np.ndarray, k: int, single: int) -> tuple:
    """(distances [Q, k], queries/s over the batch, median ms of one-query searches)."""
    start = time.perf_counter()
    dist, _ = binary_index.search(index, queries, k)
    qps = len(queries) / (time.perf_counter() - start)
    times = []
    for row in queries[:single]:
        start = time.perf_counter()
        binary_index.search(index, row[None], k)
        times.append(1000 * (time.perf_counter() - start))
    return dist, qps, statistics.median(times)


def tie_recall(dist: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of returned items (distance d + 1 = not found) within the exact k-th distance."""
    return float((dist <= exact[:, -1:]).mean())


def settings(kind: str, args: argparse.Namespace) -> list[dict]:
    return {"flat": [{}], "hnsw": [{"ef_search": v} for v in args.ef_search],
            "ivf": [{"nprobe": v} for v in args.nprobe], "mih": [{"nflip": v} for v in args.nflip]}[kind]  # fmt: skip


def bench_size(binary_index, faiss, n: int, args: argparse.Namespace, rng) -> None:
    """Build each index kind over n codes and print one row per search setting."""
    centres = None
    if args.codes == "clustered":
        centres = np.packbits(rng.integers(0, 2, (args.centres, args.bits), dtype=np.uint8), axis=1)
    db, queries = make_codes(n, args, rng, centres), make_codes(args.queries, args, rng, centres)
    given = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction}
    exact = None
    for kind in sorted(args.kinds, key=lambda k: k != "flat"):  # flat first: recall is against it
        params = binary_index.choose_params(kind, n, args.bits, given)
        start = time.perf_counter()
        index = binary_index.build_index(db, kind, params)
        build = time.perf_counter() - start
        size = faiss.serialize_index_binary(index).nbytes / 2**20
        for setting in settings(kind, args):
            binary_index.set_search_params(index, setting)
            dist, qps, ms = timed_search(binary_index, index, queries, args.k, args.single)
            exact = dist if kind == "flat" else exact
            name = "flat (exact)" if kind == "flat" else binary_index.describe(kind, {**params, **setting})
            print(
                f"| {n:>10,} | {name:<48} | {build:7.1f} | {size:8.1f} | {qps:9,.0f} | {ms:8.2f} "
                f"| {tie_recall(dist, exact):.3f} |"
            )
            sys.stdout.flush()
        del index


def main(argv: list[str] | None = None) -> int:
    import faiss

    from cmh.retrieval import binary_index

    args = parse_args(argv)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {platform.processor() or ''}".rstrip())
    print(
        f"cpu_count: {os.cpu_count()}  faiss threads: {faiss.omp_get_max_threads()}  "
        f"faiss: {faiss.__version__}  numpy: {np.__version__}  python: "
        f"{platform.python_version()}  load average (1 min): {os.getloadavg()[0]:.2f}"
    )
    made = (f"{args.centres} random centres, each bit flipped with probability {args.flip}"
            if args.codes == "clustered" else "uniform random")  # fmt: skip
    print(f"{args.bits}-bit codes: {made}; {args.queries} queries in a batch, {args.single} one at "
          f"a time; top {args.k}, ties by position; HNSW M={args.hnsw_m} efConstruction={args.ef_construction}")  # fmt: skip
    print("| database | index | build s | size MB | batch q/s | 1-query ms | recall@k |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(args.seed)
    total = time.perf_counter()
    for n in args.sizes:
        bench_size(binary_index, faiss, n, args, rng)
    print(f"total {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
