"""scripts/real_twemoji.py end to end on a generated Twemoji / emojilib package pair with tiny
models: every method's row, both directions, the random projection of the frozen features, the
query pages; a rerun reuses every finished run."""

from __future__ import annotations

import json

import pytest
from twemoji_packages import make_packages

import retrieve
from scripts import real_twemoji

TINY = ["--image-model", "resnet18", "--image-weights", "none", "--text-model", "tiny",
        "--image-size", "32", "--random-epochs", "1", "--head-epochs", "2",
        "--finetune-epochs", "1", "--n-query", "6", "--n-train", "20", "--n-val", "4"]  # fmt: skip


@pytest.mark.slow
def test_benchmark_end_to_end_on_a_generated_package(tmp_path, capsys):
    twitter, emojilib = make_packages(tmp_path / "pkg")
    out = tmp_path / "bench"
    argv = ["--twemoji", str(twitter), "--emojilib", str(emojilib), "--out", str(out),
            "--bits", "16", "--seeds", "0", "1", *TINY]  # fmt: skip
    assert real_twemoji.main(argv) == 0
    saved = json.loads((out / "results.json").read_text())
    rows = saved["runs"]
    each = [(16, 0), (16, 1)]
    assert [(r["method"], r["bits"], r["seed"]) for r in rows] == [
        *[(m, b, s) for m in ("random-towers", "frozen", "dcmh") for b, s in each],
        ("finetune", 16, 0),  # every code length, the first seed
        *[("random-proj", b, s) for b, s in each],
    ]  # fmt: skip
    for r in rows:
        assert 0 <= r["map_i2t"] <= 1 and 0 <= r["map_t2i"] <= 1 and 0 < r["chance"] < 1
        if r["method"] != "random-proj":
            run = out / f"{r['method']}-{r['bits']}-seed{r['seed']}"
            assert r["map_t2i_tie_avg"] == json.loads((run / "results.json").read_text())[
                "map_t2i_tie_avg"]  # fmt: skip
            assert json.loads((run / "args.json").read_text())["seed"] == r["seed"]
    dcmh = json.loads((out / "dcmh-16-seed0" / "args.json").read_text())
    assert dcmh["objective"] == "dcmh" and dcmh["freeze_backbones"]
    tuned = json.loads((out / "finetune-16-seed0" / "args.json").read_text())
    assert tuned["init_from"] == str(out / "frozen-16-seed0" / "best.pt")
    assert not tuned["freeze_backbones"] and tuned["lr"] == 1e-5
    assert len({r["chance"] for r in rows}) == 1  # one split, one chance level
    # the seeds change the runs, and the summary is their mean and sample std
    frozen = [r for r in rows if r["method"] == "frozen"]
    assert frozen[0]["map_i2t"] != frozen[1]["map_i2t"]
    group = next(g for g in saved["summary"] if (g["method"], g["bits"]) == ("frozen", 16))
    values = [r["map_i2t"] for r in frozen]
    assert group["seeds"] == [0, 1]
    assert group["map_i2t"]["mean"] == pytest.approx(sum(values) / 2)
    assert group["map_i2t"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    tuned_group = next(g for g in saved["summary"] if g["method"] == "finetune")
    assert tuned_group["map_t2i"]["std"] is None  # one seed: no spread claimed
    pages = sorted(p.name for p in (out / "queries").glob("*.html"))
    assert pages == ["a-flag-of-an-island-country.html", "a-happy-face.html", "a-red-fruit.html"]
    shown = (out / "queries" / "a-happy-face.html").read_text()
    assert "data:image/jpeg;base64," in shown
    # the script searches in its own process: the page is the one `retrieve.py query` writes
    again = tmp_path / "again.html"
    assert retrieve.main(["query", "--index", str(out / "index"), "--text", "a happy face",
                          "--k", "10", "--html", str(again), "--embed"]) == 0  # fmt: skip
    assert again.read_text() == shown
    text = (out / "results.md").read_text()
    assert text.startswith("| method | bits | seeds | I2T | T2I |")
    assert text.count("\n| ") == len(rows) + len(saved["summary"]) + 1  # + the runs' header
    assert "± n/a" in text and "| finetune | 16 | 0 |" in text
    capsys.readouterr()
    assert real_twemoji.main(argv) == 0  # a rerun reuses every run folder: same numbers
    again = json.loads((out / "results.json").read_text())["runs"]
    assert [r for r in again if r["method"] != "random-proj"] == [
        r for r in rows if r["method"] != "random-proj"]  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "finetune"], "add frozen"),
        (["--finetune-seeds", "5"], "--finetune-seeds 5"),
        (["--bits", "16", "--finetune-bits", "32"], "--finetune-bits 32"),
    ],
)
def test_finetune_needs_frozen_runs(tmp_path, capsys, extra, message):
    argv = ["--twemoji", str(tmp_path), "--emojilib", str(tmp_path), "--out", str(tmp_path / "o"),
            *TINY, *extra]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        real_twemoji.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
