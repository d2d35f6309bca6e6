"""scripts/real_twemoji.py end to end on a generated Twemoji / emojilib package pair with tiny
models: every method's row, both directions, the random projection of the frozen features, the
query pages; a rerun reuses every finished run."""

from __future__ import annotations

import json

import pytest

from scripts import real_twemoji
from tests.test_twemoji import make_packages

TINY = ["--image-model", "resnet18", "--image-weights", "none", "--text-model", "tiny",
        "--image-size", "32", "--random-epochs", "1", "--head-epochs", "2",
        "--finetune-epochs", "1", "--n-query", "6", "--n-train", "20", "--n-val", "4"]  # fmt: skip


@pytest.mark.slow
def test_benchmark_end_to_end_on_a_generated_package(tmp_path, capsys):
    twitter, emojilib = make_packages(tmp_path / "pkg")
    out = tmp_path / "bench"
    argv = ["--twemoji", str(twitter), "--emojilib", str(emojilib), "--out", str(out),
            "--bits", "16", "32", *TINY]  # fmt: skip
    assert real_twemoji.main(argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["bits"]) for r in rows] == [
        ("random-towers", 16), ("random-towers", 32), ("frozen", 16), ("frozen", 32),
        ("dcmh", 16), ("dcmh", 32), ("finetune", 32), ("random-proj", 16), ("random-proj", 32),
    ]  # fmt: skip
    for r in rows:
        assert 0 <= r["map_i2t"] <= 1 and 0 <= r["map_t2i"] <= 1 and 0 < r["chance"] < 1
        if r["method"] != "random-proj":
            saved = json.loads((out / f"{r['method']}-{r['bits']}" / "results.json").read_text())
            assert r["map_t2i_tie_avg"] == saved["map_t2i_tie_avg"]
    dcmh = json.loads((out / "dcmh-16" / "args.json").read_text())
    assert dcmh["objective"] == "dcmh" and dcmh["freeze_backbones"]
    assert len({r["chance"] for r in rows}) == 1  # one split, one chance level
    pages = sorted(p.name for p in (out / "queries").glob("*.html"))
    assert pages == ["a-flag-of-an-island-country.html", "a-happy-face.html", "a-red-fruit.html"]
    assert "data:image/jpeg;base64," in (out / "queries" / "a-happy-face.html").read_text()
    text = (out / "results.md").read_text()
    assert text.startswith("| method | bits | I2T | T2I |") and text.count("\n| ") == len(rows)
    capsys.readouterr()
    assert real_twemoji.main(argv) == 0  # a rerun reuses every run folder: same numbers
    assert json.loads((out / "results.json").read_text())[:7] == rows[:7]
