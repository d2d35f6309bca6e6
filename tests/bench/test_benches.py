"""The benchmarks still run (tiny sizes) and fail on a value or target they miss."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench_loss(argv: list[str]) -> int:
    import torch

    bench = load_bench("bench_loss")
    threads = torch.get_num_threads()
    try:
        return bench.main(["--repeats", "1", "--labels", "zipf", *argv])
    finally:
        torch.set_num_threads(threads)  # the benchmark pins one thread


def test_bench_loss_runs(capsys):
    assert run_bench_loss(["--sizes", "4", "6"]) == 0
    out = capsys.readouterr().out
    assert "ratio (target)" in out and "(no target below 32)" in out
    assert "MISSED" not in out and "OK: every row within its targets (4 rows)" in out


def test_bench_loss_fails_on_a_value_mismatch(capsys):
    # the first row's vectorised value is off by 1e-3; the tolerance there is 1e-5 x |loss|
    assert run_bench_loss(["--sizes", "4", "--modes", "all", "--inject-error", "1e-3"]) == 1
    captured = capsys.readouterr()
    assert "1.0e-03 (<= " in captured.out and "): MISSED" in captured.out
    assert "FAIL: target missed in 1 row(s): all batch 4" in captured.err


def test_bench_loss_fails_on_a_missed_speed_target(capsys):
    argv = ["--sizes", "4", "--modes", "all", "--min-ratio", "1e9", "--min-ratio-batch", "4"]
    assert run_bench_loss(argv) == 1
    captured = capsys.readouterr()
    assert "x (>= 1e+09x): MISSED" in captured.out
    assert "FAIL: target missed in 1 row(s): all batch 4" in captured.err


EVAL_TINY = ["--nq", "30", "--nd", "300", "--bits", "16", "--repeat", "1"]


def test_bench_eval_fails_on_a_value_mismatch(capsys):
    assert load_bench("bench_eval").main([*EVAL_TINY, "--inject-error", "1e-3"]) == 1
    captured = capsys.readouterr()
    assert "|index - reference| = 1.000e-03 (target <= 1e-09): MISSED" in captured.out
    assert "ties='index' wall" in captured.out and "(target <= 1 s): met" in captured.out
    assert "FAIL: target missed: |index - reference|" in captured.err
    assert "OK" not in captured.out


def test_bench_eval_fails_on_a_missed_time_target(capsys):
    assert load_bench("bench_eval").main([*EVAL_TINY, "--target-seconds", "0"]) == 1
    captured = capsys.readouterr()
    assert "(target <= 1e-09): met" in captured.out
    assert "(target <= 0 s): MISSED" in captured.out
    assert "FAIL: target missed: ties='index' wall" in captured.err


def test_bench_train_step_runs(capsys, tiny_prepared):
    bench = load_bench("bench_train_step")
    argv = ["--batch-size", "4", "--image-size", "32", "--steps", "1", "--data", str(tiny_prepared)]
    assert bench.main(argv) == 0
    assert "ratio included / excluded" in capsys.readouterr().out


@pytest.mark.slow  # ~17 s: feature extraction and training in child processes
def test_bench_frozen_runs(capsys, tiny_prepared, tiny_flags):
    bench = load_bench("bench_frozen")
    assert bench.main(["--data", str(tiny_prepared), "--", *tiny_flags]) == 0
    assert "epoch time ratio full / frozen" in capsys.readouterr().out


def test_bench_backbones_runs(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        argv = ["--models", "resnet18", "clip:tiny", "--steps", "1", "--batch-size", "4",
                "--image-size", "32"]  # fmt: skip
        assert load_bench("bench_backbones").main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    rows = [
        x
        for x in capsys.readouterr().out.splitlines()
        if x.startswith("| resnet18") or x.startswith("| clip:tiny")
    ]
    assert len(rows) == 2 and rows[0].endswith("| 1.00 |")


@pytest.mark.slow  # ~30 s: the sweep three ways (one at a time, two sets of threads)
def test_bench_parallel_runs_the_three_ways(capsys, tiny_prepared, tiny_flags):
    bench = load_bench("bench_parallel")
    argv = ["--data", str(tiny_prepared), "--bits", "16", "--", *tiny_flags, "--epochs", "1",
            "--no-progress"]  # fmt: skip
    assert bench.main(argv) == 0
    rows = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| ") and "wall" not in x]
    assert [r.split("|")[1].strip().split(",")[0] for r in rows] == [
        "one at a time (one thread per core)", "--parallel 2", "--parallel 2"]  # fmt: skip
    assert rows[0].endswith("| 1.00 |")
