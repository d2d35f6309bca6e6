"""Shared fixtures: a tiny generated dataset (demo generator -> prepare) and tiny-model flags."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import pytest

# Flags for a tiny, fast, offline model: timm's test_resnet (a ResNet with BatchNorm, 0.37 M
# parameters, random) at 32 px, and a 2-layer BERT of width 64 with a WordPiece vocabulary trained
# on the training captions. With the reference's ResNet-18 (11.7 M) every tiny run wrote 20 times
# the checkpoint bytes and stepped Adam over them: a 3-epoch run of these flags took 9.3-9.6 s of
# CPU with it and 7.1-7.2 s with this (`/usr/bin/time python train.py --data D --out R FLAGS
# --epochs 3`, then with `--image-model resnet18` appended). Tests of the torchvision path name
# resnet18 themselves.
TINY_FLAGS = [
    "--image-model",
    "timm:test_resnet",
    "--image-size",
    "32",
    "--image-weights",
    "none",
    "--text-model",
    "tiny",
    "--bits",
    "16",
    "--margin",
    "6",
    "--batch-size",
    "16",
    "--lr",
    "1e-3",
    "--max-length",
    "24",
    "--eval-every",
    "1",
]


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """A prepared dataset of 120 generated items (12 query, 60 train, 12 val), 32 px images."""
    import data

    root = tmp_path_factory.mktemp("tiny-demo")
    assert data.main(["demo", "--out", str(root), "--n-items", "120", "--image-size", "32"]) == 0
    return root / "prepared"


@pytest.fixture
def tiny_flags() -> list[str]:
    return list(TINY_FLAGS)


# A tiny run that learns: mean-pooled tiny BERT (its [CLS] feature at random initialisation is
# nearly the same for every caption, so [CLS] codes collapse to one), 32 bits, 6 epochs over 120
# training items. Measured here (one thread; two threads give other digits): I2T / T2I chance +
# 0.31 / + 0.25, codes of 75% / 77% of the items distinct, within 0.01 of that with the AVX2
# kernels forced (`pytest -n 0 -s tests/engine/test_learning_fixture.py` prints them). 16 bits
# leave fewer distinct codes, less room above learning.MIN_DISTINCT.
LEARN_BITS = 32
LEARN_FLAGS = [*TINY_FLAGS, "--pooling", "mean", "--epochs", "6", "--bits", str(LEARN_BITS),
               "--margin", "12"]  # fmt: skip


@pytest.fixture(scope="session")
def learn_prepared(tmp_path_factory) -> Path:
    """A prepared dataset of 240 generated items (24 query, 120 train, 24 val), 32 px images."""
    import data

    root = tmp_path_factory.mktemp("learn-demo")
    assert data.main(["demo", "--out", str(root), "--n-items", "240", "--image-size", "32"]) == 0
    return root / "prepared"


@pytest.fixture(scope="session")
def learned_run(learn_prepared, tmp_path_factory) -> Path:
    """A finished run of LEARN_FLAGS whose towers learned (checked here: diverse codes in both
    modalities, mAP >= chance + 0.1 both ways), for tests that compare numbers between paths."""
    from learning import assert_learned

    import train

    out = tmp_path_factory.mktemp("learned") / "run"
    assert train.main(["--data", str(learn_prepared), "--out", str(out), *LEARN_FLAGS]) == 0
    assert_learned(out)
    return out


# torch.compile's CPU code and the eager kernels agree to ~1e-6 on this machine, but not with the
# eager kernels forced to another instruction set: measured on an AVX-512 CPU forced to AVX2,
# epoch 1's T->I term was 7.228 compiled vs 5.959 eager. Tests comparing the two skip there.
FORCED_ISA = bool(os.environ.get("ATEN_CPU_CAPABILITY") or os.environ.get("ONEDNN_MAX_CPU_ISA"))
skip_compile_if_forced_isa = pytest.mark.skipif(
    FORCED_ISA, reason="CPU kernels forced to another instruction set: torch.compile's code and "
    "the eager kernels disagree there (AVX2 forced on AVX-512: 7.228 vs 5.959 at epoch 1)",
)


# A tiny run whose codes differ from item to item in both modalities after one epoch, for tests
# that compare two code paths (they check it with learning.assert_diverse): TINY_FLAGS at 64 bits
# with the text mean-pooled. Measured here after one epoch on tiny_prepared's 120 items: 87% of
# the image codes and 94% of the text codes distinct, the same with the AVX2 kernels forced (the
# same command prints them; TINY_FLAGS' [CLS] pooling gives one text code for all).
COMPARE_FLAGS = [*TINY_FLAGS, "--bits", "64", "--margin", "24", "--pooling", "mean"]


@pytest.fixture
def compare_flags() -> list[str]:
    return list(COMPARE_FLAGS)


# --constant-tower image|text: one tower's output replaced by a constant in this process and in
# every child process (tests/constant_tower/); each test marked `compares` must then fail
# (python tests/check_constant_towers.py runs them so, for both towers).
CONSTANT_TOWER_DIR = Path(__file__).parent / "constant_tower"


def pytest_addoption(parser):
    parser.addoption("--constant-tower", choices=("image", "text"), default=None,
                     help="replace this tower's output by a constant (tests marked compares "
                     "must fail)")  # fmt: skip


# One torch thread per pytest process, and per process it starts: torch's float reductions are split
# by thread, so a tiny run's digits (and whether its towers learn) would depend on the machine's
# core count; with one thread they depend on the CPU's instruction set alone, and two worker
# processes (pytest-xdist, `-n auto` in pyproject.toml) use two cores better than one process of two
# threads (measured on 2 cores: this suite 586 s; the suite of commit 2b36b53, one process of two
# threads, 921 s right after, same venv). The README's demo is run as the README runs it
# (tests/docs/doc_demo.py): with the threads a fresh `python train.py --demo` takes here, recorded
# before the pinning.
SUITE_THREADS = 1
README_THREADS_VAR = "CMH_TESTS_README_THREADS"
MAX_WORKERS = 8


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per core, at most MAX_WORKERS (each holds torch and its run folders)."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


# What needs every core to itself (training the README's demo on all the threads a fresh process
# takes, tests/docs/doc_demo.py: beside another worker's test it took 199 s, alone 63 s) holds the
# cores lock exclusively; every test holds it shared. Through the turnstile: a waiting exclusive
# holder keeps new shared ones out, so it is not starved. The lock files live in the folder all
# workers' temporary folders share.
_sharing: list[bool] = []  # whether this worker holds the lock shared (during a test)


def _lock_files(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared / "cores.turnstile", shared / "cores.lock"


@contextlib.contextmanager
def _cores(tmp_path_factory, mode: int):
    turnstile, cores = _lock_files(tmp_path_factory)
    with open(turnstile, "a") as gate, open(cores, "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(lock, mode)
        if mode == fcntl.LOCK_SH:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # closing the files releases both


@contextlib.contextmanager
def all_cores(tmp_path_factory):
    """Run the body with no test of another worker running meanwhile. From a module- or
    session-scoped fixture (set up before a test's own share of the lock): inside a test this
    worker would wait for its own shared lock for ever."""
    if _sharing:
        raise RuntimeError("all_cores inside a test: call it from a module- or session-scoped "
                           "fixture")  # fmt: skip
    with _cores(tmp_path_factory, fcntl.LOCK_EX):
        yield


@pytest.fixture(autouse=True)
def _share_the_cores(tmp_path_factory):
    with _cores(tmp_path_factory, fcntl.LOCK_SH):
        _sharing.append(True)
        try:
            yield
        finally:
            _sharing.pop()


def pytest_collection_modifyitems(config, items):
    """The files holding a slow test first (then the others, each group in collection order):
    the workers take whole files (`--dist loadfile --no-loadscope-reorder`), so a heavy file
    taken last would leave the other workers idle while it runs; the many light files even out
    the end instead."""
    heavy = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: each file stays together


def pytest_configure(config):
    import torch

    # the first pytest process records the machine's own thread count; workers inherit it
    os.environ.setdefault(README_THREADS_VAR, str(torch.get_num_threads()))
    os.environ["OMP_NUM_THREADS"] = str(SUITE_THREADS)
    torch.set_num_threads(SUITE_THREADS)
    tower = config.getoption("--constant-tower")
    if not tower:
        return
    import sys

    os.environ["CMH_CONSTANT_TOWER"] = tower
    paths = [str(CONSTANT_TOWER_DIR), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    sys.path.insert(0, str(CONSTANT_TOWER_DIR))
    from constant_tower_patch import make_constant

    make_constant(tower)
