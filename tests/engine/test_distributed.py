"""torchrun with 2 CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from learning import assert_diverse

import train

ROOT = Path(__file__).resolve().parents[2]


def launch(nproc: int, prepared: Path, out: Path, flags: list[str]) -> None:
    """One process: train.main here (one torch thread, as every test). Two: torchrun's CPU
    processes of one thread each."""
    train_argv = ["--data", str(prepared), "--out", str(out), *flags]
    if nproc == 1:
        assert train.main(train_argv) == 0
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "train.py", *train_argv]  # fmt: skip
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


def losses_and_weights(out: Path) -> tuple[list[float], dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines], torch.load(out / "last.pt", weights_only=True)


def three_epochs_equal(tmp_path: Path) -> tuple[dict, dict]:
    """The runs tmp_path/one and tmp_path/two: three epoch losses that moved and agree within
    1e-4 relative, and model weights within 1e-4; their last.pt states (one, two)."""
    (la, one), (lb, two) = (losses_and_weights(tmp_path / n) for n in ("one", "two"))
    assert len(la) == len(lb) == 3 and la[0] != la[-1]
    for a, b in zip(la, lb, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (la, lb)
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, atol=1e-4, rtol=0, msg=k)
    return one, two


@pytest.mark.slow
def test_two_processes_fine_tuning_equals_one(tiny_prepared, tmp_path, tiny_flags):
    """BERT fine-tuned end to end from JPEGs with augmentation on, under torchrun, equals one
    process: the crops and flips come from (seed, epoch, item), the same in any process; text
    dropout is off (--text-dropout 0: each rank would draw its own masks); --global-triplets
    makes every rank's loss the global batch's. The image backbone is frozen because its
    BatchNorm normalises over each rank's half of the batch (SyncBatchNorm runs on GPUs only), the
    one place where two processes and one cannot agree; its hash layer trains. Tolerance 1e-4
    (relative per-epoch loss; absolute on every weight) except the attention key biases: softmax
    is blind to a bias shared by all keys, so their true gradient is 0 and Adam turns the
    round-off left in it (different sums in one process and two) into steps of about lr."""
    flags = [*tiny_flags, "--global-triplets", "--text-dropout", "0", "--freeze-image-backbone",
             "--epochs", "2", "--eval-every", "2"]  # fmt: skip
    launch(1, tiny_prepared, tmp_path / "one", flags)
    launch(2, tiny_prepared, tmp_path / "two", flags)
    (la, one), (lb, two) = (losses_and_weights(tmp_path / n) for n in ("one", "two"))
    assert len(la) == len(lb) == 2
    for a, b in zip(la, lb, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (la, lb)
    assert one["model"].keys() == two["model"].keys()
    compared = 0
    for k, v in one["model"].items():
        if k.endswith("attention.self.key.bias"):
            continue
        torch.testing.assert_close(two["model"][k], v, atol=1e-4, rtol=0, msg=k)
        compared += k.startswith("text.encoder.") and v.dtype.is_floating_point
    assert compared > 10  # the text encoder's own weights were compared (it trains)


@pytest.mark.slow
def test_two_processes_full_model_run(tiny_prepared, tmp_path, tiny_flags):
    """Both backbones fine-tuned (the image tower's BatchNorm and text dropout live) under torchrun:
    completes and writes one run folder from rank 0 with the final evaluation. Not compared with
    one process: BatchNorm statistics over each rank's half batch and per-rank dropout masks make
    the two legitimately different (the exact comparison is the test above)."""
    flags = [*tiny_flags, "--epochs", "1"]
    launch(2, tiny_prepared, tmp_path / "two", flags)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert {"map_i2t", "map_t2i"} <= set(results)
    assert sorted(p.name for p in (tmp_path / "two").glob("*.pt")) == ["best.pt", "last.pt"]


@pytest.mark.slow
def test_two_processes_dcmh_equals_one(tiny_prepared, tmp_path, tiny_flags):
    """--objective dcmh under torchrun keeps F, G and B identical on every rank (rank 0 writes
    them) and, with the balance term off (--eta 0: the one term that sees the other ranks' rows
    of a batch at their buffer values, see cmh/objectives/dcmh.py), equals one process with the same
    global batch: every step's likelihood and quantization gradient is the batch's. Frozen
    features (no augmentation) and no head input norm (--head-norm none: a BatchNorm's statistics
    are each rank's slice's, as in the backbones). Tolerance 1e-4, as above."""
    flags = [*tiny_flags, "--objective", "dcmh", "--eta", "0", "--freeze-backbones",
             "--head-norm", "none",
             "--feature-cache", str(tmp_path / "features"), "--epochs", "3", "--eval-every", "3"]  # fmt: skip
    launch(1, tiny_prepared, tmp_path / "one", flags)
    launch(2, tiny_prepared, tmp_path / "two", flags)
    one, two = three_epochs_equal(tmp_path)
    for k in ("F", "G"):
        torch.testing.assert_close(two["dcmh"][k], one["dcmh"][k], atol=1e-4, rtol=0, msg=k)
    codes = torch.where(two["dcmh"]["F"] + two["dcmh"]["G"] >= 0, 1.0, -1.0)
    assert torch.equal(two["dcmh"]["B"], codes)


@pytest.mark.slow
def test_two_processes_dcmh_full_model_run(tiny_prepared, tmp_path, tiny_flags):
    """Both backbones fine-tuned under torchrun with the whole DCMH objective: the run checks
    after every epoch that all ranks hold the same F, G and B (checksums; it stops with an error
    otherwise), and rank 0's run folder has the final evaluation."""
    flags = [*tiny_flags, "--objective", "dcmh", "--epochs", "1"]
    launch(2, tiny_prepared, tmp_path / "two", flags)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert {"map_i2t", "map_t2i"} <= set(results)
    state = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["dcmh"]
    assert torch.equal(state["B"], torch.where(state["F"] + state["G"] >= 0, 1.0, -1.0))


@pytest.mark.slow
@pytest.mark.compares
def test_two_processes_proxy_equals_one(tiny_prepared, tmp_path, compare_flags):
    """--objective proxy under torchrun with --global-triplets: every rank computes the global
    batch's loss against its own copy of the proxies, which start from the same seeded draw and
    step on the same gradient (divided back by the world size), so the losses, the hash layers
    and the proxies equal one process's; a rank whose proxies drifted would change the mean loss
    and the towers' gradients. Frozen features, tolerance 1e-4 as above."""
    flags = [*compare_flags, "--objective", "proxy", "--freeze-backbones", "--global-triplets",
             "--feature-cache", str(tmp_path / "features"), "--epochs", "3", "--eval-every", "3",
             "--lr", "1e-3"]  # fmt: skip
    launch(1, tiny_prepared, tmp_path / "one", flags)
    launch(2, tiny_prepared, tmp_path / "two", flags)
    assert_diverse(tmp_path / "one")
    one, two = three_epochs_equal(tmp_path)
    assert not torch.equal(one["proxy"]["proxies"], torch.zeros_like(one["proxy"]["proxies"]))
    torch.testing.assert_close(two["proxy"]["proxies"], one["proxy"]["proxies"], atol=1e-4, rtol=0)
