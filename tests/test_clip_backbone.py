"""--backbone clip through train.py and evaluate.py: both towers from one (tiny) CLIP, its
statistics and tokenizer, the checkpoint rebuilding it alone, frozen-feature mode."""

from __future__ import annotations

import json

import evaluate
import train


def clip_flags(tiny_flags: list[str]) -> list[str]:
    return [*tiny_flags, "--backbone", "clip", "--clip-model", "tiny", "--epochs", "1"]


def test_tiny_clip_trains_and_evaluates_from_the_checkpoint(
    tiny_prepared, tiny_flags, tmp_path, capsys
):
    out = tmp_path / "clip"
    argv = [
        "--data",
        str(tiny_prepared),
        "--out",
        str(out),
        *clip_flags(tiny_flags),
        "--head-dropout",
        "0.2",
    ]
    assert train.main(argv) == 0
    args = json.loads((out / "args.json").read_text())
    assert (args["backbone"], args["image_norm"], args["head_dropout"]) == ("clip", "clip", 0.2)
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(out / "best.pt"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for d in ("i2t", "t2i"):
        assert f"{d.upper()}         {results[f'map_{d}']:.4f}" in printed


def test_tiny_clip_in_frozen_feature_mode(tiny_prepared, tiny_flags, tmp_path, capsys, caplog):
    out = tmp_path / "frozen"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *clip_flags(tiny_flags),
            "--freeze-backbones", "--feature-cache", str(tmp_path / "features")]  # fmt: skip
    assert train.main(argv) == 0
    assert len(list((tmp_path / "features").glob("features-*.pt"))) == 1
    results = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    with caplog.at_level("INFO", logger="evaluate"):
        assert evaluate.main(["--checkpoint", str(out / "best.pt"), "--no-progress"]) == 0
    assert "encoding from the feature cache" in caplog.text
    assert f"I2T         {results['map_i2t']:.4f}" in capsys.readouterr().out
