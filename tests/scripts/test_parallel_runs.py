"""scripts/run_all_bits.sh --parallel N with the real train.py on the tiny fixture: several
trainings at once (each its own process, run folder and console log) give exactly the results
of the same trainings one after the other, also with --cuda-graphs --resident-data; the margins
scale with the code length and results.md has a row per code length. Both sweeps run with one CPU
thread per training (OMP_NUM_THREADS=1, which --parallel keeps): a float reduction split over
another number of threads adds in another order, so only equal thread counts give equal digits
(the share --parallel gives each child: tests/scripts/test_seed_scripts.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from learning import assert_diverse

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
       "OMP_NUM_THREADS": "1"}  # fmt: skip


def _without(flags: list[str], *names: str) -> list[str]:
    """``flags`` less the given flags and their values (run_all_bits.sh sets them per run)."""
    out, skip = [], False
    for f in flags:
        if skip:
            skip = False
        elif f in names:
            skip = True
        else:
            out.append(f)
    return out


def _sweep(out: Path, parallel: int, data: Path, flags: list[str]) -> dict:
    argv = ["bash", str(ROOT / "scripts/run_all_bits.sh"), str(out), "--parallel", str(parallel),
            "--bits", "16", "64", "--data", str(data), *flags]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    for bits, margin in ((16, 6.0), (64, 24.0)):  # margins scaled with the bits
        r = json.loads((out / f"bits{bits}" / "results.json").read_text())
        assert (r["bits"], r["margin"]) == (bits, margin)
        results[bits] = {k: v for k, v in r.items() if k.startswith("map_")}
    return results


@pytest.mark.compares
@pytest.mark.slow
def test_parallel_runs_equal_sequential_runs(tiny_prepared, tmp_path, compare_flags):
    flags = [*_without(compare_flags, "--bits", "--margin"), "--epochs", "1", "--no-progress",
             "--cuda-graphs", "--resident-data"]  # fmt: skip
    at_once = _sweep(tmp_path / "p3", 3, tiny_prepared, flags)
    one_by_one = _sweep(tmp_path / "p1", 1, tiny_prepared, flags)
    assert at_once == one_by_one
    assert_diverse(tmp_path / "p1" / "bits64")  # codes of their own: a comparison of rankings
    assert not (tmp_path / "p3" / "bits32").exists()  # --bits 16 64
    for bits in (16, 64):
        run = tmp_path / "p3" / f"bits{bits}"
        assert json.loads((run / "args.json").read_text())["cuda_graphs"]
        log = Path(f"{run}.console.log").read_text()
        assert "--resident-data: the training split held on the device" in log
    table = {n: (tmp_path / n / "results.md").read_text().replace(str(tmp_path / n), "RUNS")
             for n in ("p1", "p3")}  # fmt: skip
    assert table["p3"] == table["p1"]
    rows = table["p1"].splitlines()
    assert rows[0].startswith("| bits | margin | I2T | T2I |")
    assert [row.split("|")[1].strip() for row in rows[2:]] == ["16", "64"]
