"""--objective dcmh: the alternating schedule (image pass, text pass, B once per epoch), linear
heads, buffers in the checkpoint so --resume is exact, and the text-only form."""

from __future__ import annotations

import json

import pytest
import torch
from learning import assert_diverse

import train
from cmh.objectives import dcmh as dcmh_training
from cmh.objectives import dcmh_loss as dcmh_objective

FLAGS = ["--objective", "dcmh", "--epochs", "2", "--lr", "1e-3"]


@pytest.fixture
def spy(monkeypatch):
    """Records every update_codes call and every buffer update (modality, rows)."""
    seen = {"codes": 0, "updates": []}
    real_codes, real_update = dcmh_objective.DcmhState.update_codes, dcmh_objective.DcmhState.update

    def codes(self):
        seen["codes"] += 1
        real_codes(self)

    def update(self, modality, rows, out):
        seen["updates"].append((modality, rows.tolist(), out.detach().clone()))
        real_update(self, modality, rows, out)

    monkeypatch.setattr(dcmh_objective.DcmhState, "update_codes", codes)
    monkeypatch.setattr(dcmh_objective.DcmhState, "update", update)
    return seen


def test_schedule_passes_rows_and_codes(tiny_prepared, tiny_flags, tmp_path, spy):
    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, *FLAGS]
    assert train.main(argv) == 0
    n, batch = 60, 16  # the tiny split's training items; --batch-size 16
    steps = n // batch
    # construction (1) + once per epoch (2): B is recomputed once per epoch, after both passes
    assert spy["codes"] == 1 + 2
    modalities = [m for m, _, _ in spy["updates"]]
    assert modalities == (["image"] * steps + ["text"] * steps) * 2
    for _, rows, values in spy["updates"]:
        assert len(rows) == batch == len(set(rows)) and values.shape == (batch, 16)
    state = torch.load(out / "last.pt", weights_only=True)
    buffers = state["dcmh"]
    assert torch.equal(buffers["B"], torch.where(buffers["F"] + buffers["G"] >= 0, 1.0, -1.0))
    last_epoch = spy["updates"][2 * steps :]  # the buffers hold the last write of each row
    for name, modality in (("F", "image"), ("G", "text")):
        for m, rows, values in last_epoch:
            if m == modality:
                assert torch.equal(buffers[name][rows], values)
    assert state["model_config"]["head_activation"] == "none"
    assert "dcmh" not in torch.load(out / "best.pt", weights_only=True)


def test_linear_heads_can_leave_minus_one_to_one(tiny_prepared, tiny_flags, tmp_path):
    from cmh.models.hashers import load_model

    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, *FLAGS, "--epochs", "1"]
    assert train.main(argv) == 0
    model, _, _ = load_model(torch.load(out / "best.pt", weights_only=True), torch.device("cpu"))
    features = 1e3 * torch.randn(2, model.text.head.linear.in_features)  # far from the mean
    assert model.text.head(features).abs().max() > 1  # no tanh


@pytest.mark.compares
def test_resume_is_exact(tiny_prepared, compare_flags, tmp_path):
    base = ["--data", str(tiny_prepared), *compare_flags, *FLAGS]
    assert train.main([*base, "--out", str(tmp_path / "full")]) == 0
    assert_diverse(tmp_path / "full")
    assert train.main([*base, "--out", str(tmp_path / "cut"), "--epochs", "1"]) == 0
    assert train.main(["--out", str(tmp_path / "cut"), "--resume", "--epochs", "2"]) == 0
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("full", "cut"))
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for key in ("F", "G", "B"):
        assert torch.equal(a["dcmh"][key], b["dcmh"][key]), key


def test_text_only_uses_one_buffer(tiny_prepared, tiny_flags, tmp_path):
    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, *FLAGS,
            "--modalities", "text", "--pooling", "mean"]  # fmt: skip
    assert train.main(argv) == 0
    buffers = torch.load(out / "last.pt", weights_only=True)["dcmh"]
    assert "F" not in buffers and buffers["single_modality"] is True
    assert "map_t2t" in json.loads((out / "results.json").read_text())


def test_linear_lr_schedule_and_sgd(tiny_prepared, tiny_flags, tmp_path):
    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, *FLAGS, "--epochs",
            "3", "--solver", "sgd", "--lr-schedule", "linear", "--lr", "0.01", "--lr-end", "1e-4"]  # fmt: skip
    assert train.main(argv) == 0
    lrs = [json.loads(x)["lr"]["image"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.01, (0.01 + 1e-4) / 2, 1e-4])
    state = torch.load(out / "last.pt", weights_only=True)
    assert "momentum" in state["optimizer"]["param_groups"][0]  # an SGD state
    assert dcmh_training.PASSES == ("image", "text")


def test_refusals(tiny_prepared, tiny_flags, tmp_path, capsys):
    base = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *tiny_flags, *FLAGS]
    assert train.main([*base, "--gamma", "-1"]) == 2
    assert "--gamma must be >= 0" in capsys.readouterr().err
    assert train.main([*base, "--image-cache"]) == 2
    assert "--image-cache does not go with --objective dcmh" in capsys.readouterr().err


def test_dcmh_recipe_is_the_public_schedule():
    args = train.parse_args(["--recipe", "dcmh"])
    got = (args.objective, args.solver, args.lr_schedule, args.batch_size, args.epochs, args.lr)
    assert got == ("dcmh", "sgd", "linear", 128, 500, 10**-1.5)
    assert (args.gamma, args.eta, args.lr_end, args.weight_decay) == (1.0, 1.0, 1e-6, 5e-4)
    ours = train.parse_args(["--recipe", "dcmh", "--solver", "adam", "--lr", "1e-5",
                             "--lr-schedule", "constant"])  # fmt: skip
    assert (ours.objective, ours.solver, ours.lr) == ("dcmh", "adam", 1e-5)
