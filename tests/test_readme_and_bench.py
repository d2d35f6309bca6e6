"""The README's fresh-machine commands are what CI runs; the benchmarks still run (tiny sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_readme_commands_verbatim():
    ci = [
        line
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line.startswith("python -m venv")
    ]
    readme = (ROOT / "README.md").read_text()
    assert len(ci) == 2
    assert any("pytest" in line for line in ci) and any("train.py --demo" in line for line in ci)
    for line in ci:
        assert f"\n{line}\n" in readme, line


def test_bench_loss_runs(capsys):
    import torch

    bench = load_bench("bench_loss")
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--sizes", "4", "6", "--repeats", "1", "--labels", "zipf"]) == 0
    finally:
        torch.set_num_threads(threads)  # the benchmark pins one thread
    assert "ratio" in capsys.readouterr().out


def test_bench_train_step_runs(capsys, tiny_prepared):
    bench = load_bench("bench_train_step")
    argv = ["--batch-size", "4", "--image-size", "32", "--steps", "1", "--data", str(tiny_prepared)]
    assert bench.main(argv) == 0
    assert "ratio included / excluded" in capsys.readouterr().out


def test_bench_frozen_runs(capsys, tiny_prepared, tiny_flags):
    bench = load_bench("bench_frozen")
    assert bench.main(["--data", str(tiny_prepared), "--", *tiny_flags]) == 0
    assert "epoch time ratio full / frozen" in capsys.readouterr().out
