"""torchrun with 2 CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def launch(nproc: int, prepared: Path, out: Path, flags: list[str]) -> None:
    train_argv = ["train.py", "--data", str(prepared), "--out", str(out), *flags]
    if nproc == 1:
        cmd = [sys.executable, *train_argv]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            *train_argv,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tiny_prepared, tmp_path, tiny_flags):
    """Frozen-feature mode (no augmentation, no dropout: the arithmetic is deterministic) with
    --global-triplets: each step sees the same 16 items and the same triplets in both runs, so
    the loss trajectory agrees to float round-off. Tolerance: 1e-4 relative per epoch loss, and
    1e-4 absolute on the final hash-layer weights."""
    flags = [
        *tiny_flags,
        "--freeze-backbones",
        "--feature-cache",
        str(tmp_path / "features"),
        "--global-triplets",
        "--epochs",
        "3",
        "--eval-every",
        "3",
    ]
    launch(1, tiny_prepared, tmp_path / "one", flags)
    launch(2, tiny_prepared, tmp_path / "two", flags)
    losses = {}
    for name in ("one", "two"):
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        losses[name] = [json.loads(x)["loss"] for x in lines]
        assert len(losses[name]) == 3
    for a, b in zip(losses["one"], losses["two"], strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), losses
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-4, rtol=0, msg=k)
    assert (tmp_path / "two" / "results.json").is_file()  # rank 0 evaluated at the end


@pytest.mark.slow
def test_two_processes_full_model_run(tiny_prepared, tmp_path, tiny_flags):
    """The full model (ResNet-18 and BERT fine-tuned, augmentation, dropout) under torchrun:
    completes, writes one run folder from rank 0, and its first-epoch loss is that of one process
    within 10% (the ranks draw their own augmentation and dropout, so only close, not equal)."""
    flags = [*tiny_flags, "--epochs", "1"]
    launch(1, tiny_prepared, tmp_path / "one", flags)
    launch(2, tiny_prepared, tmp_path / "two", flags)
    a, b = (
        json.loads((tmp_path / n / "metrics.jsonl").read_text())["loss"] for n in ("one", "two")
    )
    assert abs(a - b) <= 0.1 * a
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert {"map_i2t", "map_t2i"} <= set(results)
