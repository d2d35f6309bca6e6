"""Benchmark: ``data.py prepare --mat`` on a NUS-WIDE-shaped DCMH set, wall time and peak memory.

For each size in --items it writes, in a temporary folder, a scaled-down copy of the DCMH
NUS-WIDE split files: ``nus-wide-tc21-iall.mat`` (MATLAB v7.3: HDF5 with the MATLAB header,
224 x 224 x 3 x N uint8 in MATLAB order, so h5py shows (N, 3, 224, 224)), ``-lall.mat``
(v5, N x 21 labels) and ``-yall.mat`` (v5, N x 1,000 bag of words, about 8 tags per item,
1% of the items without a tag). It then runs the prepare (``data.main(["prepare", "--mat",
DIR, "--format", "dcmh", "--dataset", "nuswide", ...])``) in a fresh child process and reports,
against the size of the image array it copies:

- wall: the prepare call alone (the child's imports, about 4 s of torch, are not in it);
- peak RSS of the prepare: the child's ``VmHWM`` (Linux, /proc/self/status), reset with
  ``/proc/self/clear_refs`` after the imports, minus the resident memory at that point: the
  memory the prepare itself added at its peak;
- peak RSS of the process: the child's ``ru_maxrss`` (``os.wait4``), imports included.

The images are streamed in chunks, so the prepare's peak should stay flat as N grows; what does
grow with N is the label and bag-of-words matrices (read whole) and the manifest.

    python bench/bench_mat_prepare.py [--items 1000 4000 8000] [--size 224] [--vocab 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MAT_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, nargs="+", default=[1000, 4000, 8000], help="set sizes N")
    p.add_argument("--size", type=int, default=224, help="image side (pixels)")
    p.add_argument("--labels", type=int, default=21, help="label columns (21: NUS-WIDE tc21)")
    p.add_argument("--vocab", type=int, default=1000, help="bag-of-words columns")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed")
    args = p.parse_args(argv)
    if min(args.items) < 400 or args.size < 8 or args.labels != 21:
        p.error("--items must be >= 400 (query 100, train 200), --size >= 8, --labels 21")
    return args


def write_set(folder: Path, n: int, size: int, n_labels: int, vocab: int, seed: int) -> None:
    """The three split files; the images are written 256 at a time (never whole in memory)."""
    import h5py
    import scipy.io

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    path = folder / "nus-wide-tc21-iall.mat"
    with h5py.File(path, "w", userblock_size=512) as file:
        images = file.create_dataset("IAll", (n, 3, size, size), dtype=np.uint8)
        images.attrs["MATLAB_class"] = np.bytes_("uint8")
        for start in range(0, n, 256):
            count = min(256, n - start)
            images[start : start + count] = rng.integers(0, 256, (count, 3, size, size), np.uint8)
    with open(path, "r+b") as raw:
        raw.write(MAT_HEADER)
    labels = np.zeros((n, n_labels), np.uint8)
    labels[np.arange(n), rng.integers(0, n_labels, n)] = 1
    labels[rng.random((n, n_labels)) < 0.05] = 1
    bow = np.zeros((n, vocab), np.float64)  # MATLAB stores doubles
    for item in range(n):
        if rng.random() >= 0.01:
            bow[item, rng.choice(vocab, 8, replace=False)] = 1
    scipy.io.savemat(folder / "nus-wide-tc21-lall.mat", {"LAll": labels})
    scipy.io.savemat(folder / "nus-wide-tc21-yall.mat", {"YAll": bow})


# The child: import, reset the peak, run the prepare, print what it measured as JSON.
CHILD = """
import json, re, sys, time
import data
def status(key):
    text = open("/proc/self/status").read()
    return int(re.search(key + r":\\s+(\\d+)", text).group(1)) / 1024  # MiB
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
before = status("VmRSS")
start = time.perf_counter()
code = data.main(sys.argv[1:])
wall = time.perf_counter() - start
print(json.dumps({"code": code, "wall": wall, "added": status("VmHWM") - before}))
"""


def run_child(argv: list[str]) -> dict:
    """{"wall", "added"} measured inside a fresh child running ``data.main(argv)``, plus
    "maxrss": the child's own ``ru_maxrss`` (MiB) from ``os.wait4``."""
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, *argv], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode()
    if child.returncode != 0 or not text.strip():
        raise RuntimeError(f"{argv} failed:\n{text[-3000:]}")
    result = json.loads(text.strip().splitlines()[-1])
    if result["code"] != 0:
        raise RuntimeError(f"{argv} exited {result['code']}:\n{text[-3000:]}")
    return {**result, "maxrss": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB on Linux


def measure(work: Path, n: int, args: argparse.Namespace) -> dict:
    """Generate the set of ``n`` items, prepare it in a child, report the numbers."""
    folder, out = work / f"nus-{n}", work / f"prepared-{n}"
    start = time.perf_counter()
    write_set(folder, n, args.size, args.labels, args.vocab, args.seed)
    generate = time.perf_counter() - start
    argv = ["prepare", "--mat", str(folder), "--format", "dcmh", "--dataset", "nuswide"]
    argv += ["--out", str(out), "--n-query", "100", "--n-train", "200", "--n-val", "50"]
    measured = run_child(argv)
    (array,) = out.glob("images-*.u8")
    return {
        "items": n,
        "array_mib": array.stat().st_size / 2**20,
        "generate_s": generate,
        **measured,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; images {args.size} x {args.size} x 3 uint8"
    )
    print(
        "items  image array (MiB)  YAll doubles (MiB)  wall (s)  MiB/s  "
        "prepare's peak RSS (MiB)  process peak"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sorted(args.items):
            row = measure(Path(tmp), n, args)
            print(
                f"{row['items']:>5}  {row['array_mib']:>17.0f}  "
                f"{row['items'] * args.vocab * 8 / 2**20:>18.0f}  {row['wall']:>8.1f}  "
                f"{row['array_mib'] / row['wall']:>5.0f}  {row['added']:>24.0f}  "
                f"{row['maxrss']:>12.0f}   (set written in {row['generate_s']:.1f} s)"
            )
            for path in Path(tmp).iterdir():  # free the disk before the next size
                shutil.rmtree(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
