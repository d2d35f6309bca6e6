"""Benchmark: query throughput of retrieve.py's FAISS binary indexes on random codes.

For each database size (default 18,000 and 1,000,000 uniformly random 64-bit codes) it builds the
three index kinds with binary_index.build_index (flat = exact IndexBinaryFlat; HNSW; IVF), then times
`binary_index.search` (top --k, ties by database position) for --queries random queries in one batch
(queries/s) and one query at a time (ms per query, median of --single runs). Recall@k of the
approximate indexes is against the exact ranking and counts ties: the fraction of the k returned
items whose distance is at most the exact k-th distance. Uniform random codes have no cluster
structure, the hardest case for HNSW and IVF; learned codes are clustered.

    python bench/bench_retrieve.py [--sizes 18000 1000000] [--bits 64] [--queries 1000]
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
    p.add_argument("--sizes", type=int, nargs="+", default=[18000, 1000000], help="database sizes")
    p.add_argument("--bits", type=int, default=64, help="code length (a multiple of 8)")
    p.add_argument("--queries", type=int, default=1000, help="queries in the batch")
    p.add_argument("--single", type=int, default=50, help="one-at-a-time queries timed")
    p.add_argument("--k", type=int, default=10, help="results per query")
    p.add_argument("--hnsw-m", type=int, default=16, help="HNSW neighbours per node")
    p.add_argument("--ef-construction", type=int, default=20, help="HNSW build beam width")
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 256], help="HNSW beams")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32], help="IVF lists probed")
    p.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed")
    args = p.parse_args(argv)
    if args.bits % 8 or args.bits < 8 or min(args.sizes) <= args.k or args.k < 1:
        p.error("--bits must be a positive multiple of 8 and every size larger than --k >= 1")
    return args


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


def bench_size(binary_index, n: int, args: argparse.Namespace, rng) -> None:
    """Build the three index kinds over n random codes and print one row per search setting."""
    width = args.bits // 8
    db = rng.integers(0, 256, (n, width), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.queries, width), dtype=np.uint8)
    nlist = binary_index.auto_nlist(n)
    params = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction, "nlist": nlist}
    exact = None
    for kind in ("flat", "hnsw", "ivf"):
        start = time.perf_counter()
        index = binary_index.build_index(db, kind, params)
        build = time.perf_counter() - start
        settings = {"flat": [None], "hnsw": args.ef_search, "ivf": args.nprobe}[kind]
        for value in settings:
            name = {
                "flat": "exact",
                "hnsw": f"efSearch={value}",
                "ivf": f"nlist={nlist} nprobe={value}",
            }[kind]
            binary_index.set_search_params(index, {"ef_search": value, "nprobe": value})
            dist, qps, ms = timed_search(binary_index, index, queries, args.k, args.single)
            exact = dist if kind == "flat" else exact
            recall = tie_recall(dist, exact)
            print(
                f"| {n:>9,} | {kind:<4} | {name:<21} | {build:7.1f} | {qps:9,.0f} | {ms:8.2f} "
                f"| {recall:.3f} |"
            )
            sys.stdout.flush()


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
    print(
        f"random {args.bits}-bit codes; {args.queries} queries in a batch, {args.single} one at a "
        f"time; top {args.k}, ties by position; HNSW M={args.hnsw_m} "
        f"efConstruction={args.ef_construction}; IVF nlist about sqrt(n)"
    )
    print("| database | kind | setting | build s | batch q/s | 1-query ms | recall@k |")
    print("|---:|---|---|---:|---:|---:|---:|")
    rng = np.random.default_rng(args.seed)
    total = time.perf_counter()
    for n in args.sizes:
        bench_size(binary_index, n, args, rng)
    print(f"total {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
