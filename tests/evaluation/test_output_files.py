"""What a run and a query leave for people: best.pt without optimizer state (last.pt keeps it for
resuming), plots titled with the run and drawn against chance, and a results page that says
what was asked, explains its frames and (--embed) carries its own thumbnails."""

from __future__ import annotations

import base64
import html
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate
import retrieve
import train
from cmh.evaluation import plots
from cmh.evaluation.hamming_metrics import chance_level
from cmh.evaluation.plots import EMPTY_RULE, LABEL_GAP, plot_figures, plot_title
from cmh.retrieval import results_page
from cmh.retrieval.index_folder import load_index


def spy_on_plots(mp: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Record (title, results) of every plot_figures call (the figures are still made)."""
    seen, real = [], plots.plot_figures

    def spy(queries, database, directions, results, title):
        seen.append((title, dict(results or {})))
        return real(queries, database, directions, results, title)

    mp.setattr(plots, "plot_figures", spy)
    return seen


@pytest.fixture(scope="module")
def tiny_run(tiny_prepared, tmp_path_factory):
    """A finished 2-epoch run of the tiny model (validated every epoch), with the plot titles
    its final evaluation used."""
    from conftest import TINY_FLAGS

    out = tmp_path_factory.mktemp("outputs") / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *TINY_FLAGS, "--epochs", "2"]
    with pytest.MonkeyPatch.context() as mp:
        seen = spy_on_plots(mp)
        assert train.main(argv) == 0
    return {"out": out, "plots": seen}


def test_best_pt_has_no_optimizer_state_and_last_pt_has(tiny_run, tmp_path):
    tiny_run = tiny_run["out"]
    best = torch.load(tiny_run / "best.pt", weights_only=True)
    last = torch.load(tiny_run / "last.pt", weights_only=True)
    assert "optimizer" not in best
    assert {"model", "model_config", "epoch", "args", "rng", "best", "best_epoch"} <= set(best)
    assert last["optimizer"]["state"]  # Adam moments, for --resume
    assert (tiny_run / "best.pt").stat().st_size < (tiny_run / "last.pt").stat().st_size
    argv = ["--checkpoint", str(tiny_run / "best.pt"), "--out", str(tmp_path)]
    assert evaluate.main(argv) == 0
    ours = json.loads((tmp_path / "results.json").read_text())
    theirs = json.loads((tiny_run / "results.json").read_text())
    for key in ("map_i2t", "map_t2i", "map_i2t_tie_avg", "map_t2i_tie_avg", "chance_i2t"):
        assert ours[key] == theirs[key], key


def encoded_splits(bits=12, n_q=9, n_db=40, n_labels=4, seed=0) -> tuple[dict, dict]:
    """Random ±1 codes and 0/1 labels in the layout of cmh.evaluation.encoding.encode."""
    rng = np.random.default_rng(seed)

    def split(n):
        codes = {m: np.where(rng.random((n, bits)) < 0.5, -1, 1).astype(np.int8) for m in "ab"}
        labels = (rng.random((n, n_labels)) < 0.3).astype(np.float32)
        return {"image": codes["a"], "text": codes["b"], "labels": labels}

    return split(n_q), split(n_db)


def test_plots_are_titled_with_the_run_and_drawn_against_chance():
    q, db = encoded_splits()
    title = plot_title("/runs/iapr-12", "/data/iapr/prepared", 12, 3)
    assert title == "iapr-12 · iapr/prepared · 12 bits · best epoch 3"
    assert plot_title("/r", "/d/mine", 12, 6, "/r/last.pt") == "r · mine · 12 bits · last.pt epoch 6"
    results = {"map_i2t": 0.4567, "map_t2i": 0.5678}
    figs = plot_figures(q, db, ("i2t", "t2i"), results, title)
    assert sorted(figs) == ["pr_curve.png", "precision_at_n.png"]
    chance = chance_level(q["labels"], db["labels"])
    assert 0 < chance < 1
    for name, fig in figs.items():
        (ax,) = fig.axes
        assert title in ax.get_title(), name
        assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1, name
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), chance), name
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "I2T  mAP 0.457" in legend and "T2I  mAP 0.568" in legend, legend
        assert any(t.startswith("chance") for t in legend), legend
    ax_pr = figs["pr_curve.png"].axes[0]
    marks = [(t.get_text(), t.xy) for t in ax_pr.texts]
    assert {"r=0", "r=12"} <= {m for m, _ in marks}  # Hamming radii on the PR curve
    for i, (_, a) in enumerate(marks):  # none printed over another
        assert all(np.hypot(a[0] - b[0], a[1] - b[1]) >= LABEL_GAP for _, b in marks[:i])
    assert EMPTY_RULE in ax_pr.get_xlabel() and "counts as precision 0" in EMPTY_RULE


def test_train_and_evaluate_title_their_plots(tiny_run, tmp_path, monkeypatch):
    """train.py's final evaluation and evaluate.py title the plots of best.pt with its data
    folder, bits and epoch, and give them the mAPs they report."""
    run = tiny_run["out"]
    best = torch.load(run / "best.pt", weights_only=True)
    want = plot_title(run, best["args"]["data"], 16, best["epoch"])
    data = Path(best["args"]["data"])
    assert want == f"{run.name} · {data.parent.name}/prepared · 16 bits · best epoch {best['epoch']}"
    seen = spy_on_plots(monkeypatch)
    assert evaluate.main(["--checkpoint", str(run / "best.pt"), "--out", str(tmp_path)]) == 0
    reported = json.loads((run / "results.json").read_text())
    for title, results in (tiny_run["plots"][-1], seen[-1]):
        assert title == want
        assert results["map_i2t"] == reported["map_i2t"] and "map_t2i" in results
    assert (run / "pr_curve.png").is_file() and (tmp_path / "precision_at_n.png").is_file()


class _Page(HTMLParser):
    """The <title> text, every <img> (src, alt) and the number of <figure> cards of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.title, self.imgs, self.figures, self._in_title = "", [], 0, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self._in_title |= tag == "title"
        self.figures += tag == "figure"
        if tag == "img":
            self.imgs.append((dict(attrs)["src"], dict(attrs)["alt"]))

    def handle_endtag(self, tag):
        self._in_title &= tag != "title"

    def handle_data(self, data):
        self.title += data if self._in_title else ""


def decoded(src: str) -> Image.Image:
    head, _, data = src.partition(",")
    assert head == "data:image/jpeg;base64", head[:40]
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.fixture(scope="module")
def index(tiny_run, tmp_path_factory):
    """A flat index of the tiny run's database, made from its best.pt (no optimizer state)."""
    out = tmp_path_factory.mktemp("index") / "index"
    ckpt = tiny_run["out"] / "best.pt"
    assert retrieve.main(["index", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    return out


def test_item_page_is_titled_explains_frames_and_embeds(index, tmp_path, capsys):
    from retrieve_output import printed_rows

    items = load_index(index).items
    item, page = items["ids"][0], tmp_path / "page.html"
    argv = ["query", "--index", str(index), "--item", str(item), "--k", "5"]
    assert retrieve.main([*argv, "--html", str(page), "--embed"]) == 0
    printed = [rid for rid, _ in printed_rows(capsys.readouterr().out)]
    text = page.read_text(encoding="utf-8")
    parsed = _Page(text)
    name = items["images"][0].rsplit("/", 1)[-1]
    assert f"item {item} (image): {name}" in parsed.title and "retrieve" in parsed.title
    assert "green frame</span> relevant to the query item" in text
    assert "red frame</span> not relevant" in text
    assert len(printed) == 5 and parsed.figures == 5
    assert [alt for _, alt in parsed.imgs] == ["query", *map(str, printed)]
    for src, _ in parsed.imgs:  # every image inlined: the page can be moved on its own
        assert max(decoded(src).size) <= results_page.THUMB_PX
    linked = tmp_path / "linked.html"
    assert retrieve.main([*argv, "--html", str(linked)]) == 0  # without --embed: file links
    assert not any(src.startswith("data:") for src, _ in _Page(linked.read_text()).imgs)


def test_page_title_escapes_the_text_query_and_thumbnails_shrink(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (400, 300), (10, 200, 30)).save(big)
    info = {"modality": "text", "caption": "<b>x</b> & y", "image": None, "searched": "image"}
    row = {"rank": 1, "id": 5, "distance": 0, "relevant": None, "caption": "c", "labels": []}
    meta = {"split": "db", "bits": 8, "kind": "flat"}
    page = tmp_path / "p.html"
    results_page.write_html(page, info, [{**row, "image": str(big)}], meta, embed=True)
    text = page.read_text(encoding="utf-8")
    assert f"<title>text: {html.escape('<b>x</b> & y')} · retrieve</title>" in text
    assert "green frame" not in text and "relevance is known only for --item queries" in text
    (src, _), *_ = _Page(text).imgs
    assert decoded(src).size == (160, 120)
