"""--backbone clip through train.py and evaluate.py: both towers from one (tiny) CLIP, its
statistics and tokenizer, the checkpoint rebuilding it alone, frozen-feature mode."""

from __future__ import annotations

import json

import pytest
from learning import assert_diverse

import evaluate
import train
from cmh.engine import run_setup


def clip_flags(tiny_flags: list[str]) -> list[str]:
    return [*tiny_flags, "--backbone", "clip", "--clip-model", "tiny", "--epochs", "1"]


@pytest.mark.compares
def test_tiny_clip_trains_and_evaluates_from_the_checkpoint(
    tiny_prepared, compare_flags, tmp_path, capsys
):
    out = tmp_path / "clip"
    argv = [
        "--data",
        str(tiny_prepared),
        "--out",
        str(out),
        *clip_flags(compare_flags),
        "--head-dropout",
        "0.2",
    ]
    assert train.main(argv) == 0
    assert_diverse(out)
    args = json.loads((out / "args.json").read_text())
    assert (args["backbone"], args["image_norm"], args["head_dropout"]) == ("clip", "clip", 0.2)
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(out / "best.pt"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for d in ("i2t", "t2i"):
        assert f"{d.upper()}         {results[f'map_{d}']:.4f}" in printed


@pytest.mark.compares
def test_tiny_clip_in_frozen_feature_mode(tiny_prepared, compare_flags, tmp_path, capsys, caplog):
    out = tmp_path / "frozen"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *clip_flags(compare_flags),
            "--freeze-backbones", "--feature-cache", str(tmp_path / "features")]  # fmt: skip
    assert train.main(argv) == 0
    assert_diverse(out)
    assert len(list((tmp_path / "features").glob("features-*.pt"))) == 1
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    with caplog.at_level("INFO", logger="evaluate"):
        assert evaluate.main(["--checkpoint", str(out / "best.pt"), "--no-progress"]) == 0
    assert "encoding from the feature cache" in caplog.text
    printed = capsys.readouterr().out
    for d in ("i2t", "t2i"):
        assert f"{d.upper()}         {results[f'map_{d}']:.4f}" in printed


def test_per_tower_rates_and_the_text_limit():
    """--optimizer separate: CLIP's vision half with the image head, its text half with the text
    head, every trainable parameter in exactly one group; --max-length beyond CLIP's positions
    refused when the architecture comes from a checkpoint's config."""
    import pytest

    import models
    from cmh.utils.errors import UserError

    cfg = models.ModelConfig(image_encoder="clip", text_encoder="clip", clip_model="tiny",
                             image_size=32, max_length=24, image_norm="clip")  # fmt: skip
    model, _ = models.build_model(cfg, ["a red car", "two dogs on the grass"])
    args = train.parse_args(["--optimizer", "separate", "--image-lr", "1e-3", "--text-lr", "1e-4"])
    groups = run_setup.build_optimizer(args, model).param_groups
    assert [(g["name"], g["lr"]) for g in groups] == [("image", 1e-3), ("text", 1e-4)]
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert not ids[0] & ids[1]
    assert ids[0] | ids[1] == {id(p) for p in model.parameters() if p.requires_grad}
    too_long = models.ModelConfig.from_dict({**model.config.to_dict(), "max_length": 500})
    with pytest.raises(UserError, match="--max-length 500 is more than the 32 positions"):
        models.build_model(too_long, pretrained=False)
