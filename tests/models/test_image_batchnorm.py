"""--image-batchnorm frozen: the image backbone's BatchNorm layers keep their running statistics
while the rest of the model trains (their scale and shift still learn)."""

from __future__ import annotations

import pytest
import torch
from learning import assert_diverse
from torch import nn

import train
from cmh.models.image_backbones import build_backbone
from cmh.runs.checkpoints import load_checkpoint
from models import ImageHasher


def _hasher(frozen_batchnorm: bool) -> ImageHasher:
    torch.manual_seed(0)
    backbone, width = build_backbone("resnet18", None, 32)
    return ImageHasher(16, backbone, width=width, frozen_batchnorm=frozen_batchnorm)


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_batchnorm_keeps_statistics_and_trains_scale():
    model = _hasher(True).train()
    assert model.training and model.head.training
    assert all(not m.training for m in _norms(model))
    before = [m.running_mean.clone() for m in _norms(model)]
    images = torch.randn(8, 3, 32, 32) * 3 + 1  # far from the statistics held
    model(images).sum().backward()
    for m, old in zip(_norms(model), before, strict=True):
        assert torch.equal(m.running_mean, old)
        assert m.weight.grad is not None and m.weight.requires_grad
    model.eval()
    assert all(not m.training for m in _norms(model))


def test_default_batchnorm_updates_its_statistics():
    model = _hasher(False).train()
    assert all(m.training for m in _norms(model))
    before = [m.running_mean.clone() for m in _norms(model)]
    model(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert any(
        not torch.equal(m.running_mean, old) for m, old in zip(_norms(model), before, strict=True)
    )


def test_train_py_records_and_applies_it(tiny_prepared, tmp_path, tiny_flags):
    out = tmp_path / "r"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, "--epochs", "1",
            "--no-progress", "--image-batchnorm", "frozen"]  # fmt: skip
    assert train.main(argv) == 0
    state = load_checkpoint(out / "last.pt")
    assert state["model_config"]["image_batchnorm"] == "frozen"
    means = [v for k, v in state["model"].items() if k.startswith("image.backbone")
             and k.endswith("running_mean")]  # fmt: skip
    assert means and all(torch.count_nonzero(v) == 0 for v in means)  # fresh BN: zeros kept
    weights = [v for k, v in state["model"].items() if k.startswith("image.backbone")
               and k.endswith("bn1.weight")]  # fmt: skip
    assert any(not torch.equal(w, torch.ones_like(w)) for w in weights)  # scale trained


@pytest.mark.compares
def test_bench_batchnorm_drift(tiny_prepared, tmp_path, compare_flags, capsys):
    """bench/bench_batchnorm_drift.py: with frozen statistics a training-mode pass without
    weight updates leaves the codes, and so the mAP, exactly as they were."""
    import importlib.util
    from pathlib import Path

    common = ["--data", str(tiny_prepared), *compare_flags, "--epochs", "1", "--no-progress"]
    assert train.main([*common, "--out", str(tmp_path / "a")]) == 0
    start = ["--init-from", str(tmp_path / "a" / "best.pt")]
    assert train.main([*common, "--out", str(tmp_path / "b"), *start]) == 0
    assert_diverse(tmp_path / "b")
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_batchnorm_drift.py"
    spec = importlib.util.spec_from_file_location("bench_batchnorm_drift", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    capsys.readouterr()
    assert bench.main(["--run", str(tmp_path / "b")]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("--image-batch")]
    assert lines[0].startswith("--image-batchnorm train: start I2T")
    frozen = lines[1].removeprefix("--image-batchnorm frozen: start ")
    before, after = frozen.split("; after one training-mode pass without weight updates ")
    assert before == after
