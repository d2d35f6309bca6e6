"""cmh.evaluation.training_curves: RUN/curves.png from a made-up run folder (loss terms, validation mAP, the query
curve drawn apart), torn last lines skipped, written atomically; every seed's curve per length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from cmh.evaluation.training_curves import (
    QUERY_LABEL,
    plot_run_curves,
    plot_seed_curves,
    run_curves_figure,
    seed_curves_figure,
)

TERMS = ("i2t", "t2i", "i2i", "t2t")


def metrics_line(epoch: int, quant: float = 0.0, directions=("i2t", "t2i")) -> dict:
    """One metrics.jsonl record; validation keys on even epochs."""
    record = {t: 10.0 - epoch + k for k, t in enumerate(TERMS)}
    record.update(epoch=epoch, quant=quant, lr={"image": 1e-5, "text": 1e-5}, seconds=1.0)
    record["loss"] = sum(record[t] for t in TERMS) + quant
    if epoch % 2 == 0:
        for k, d in enumerate(directions):
            record[f"val_map_{d}"] = 0.3 + 0.05 * epoch + 0.01 * k
            record[f"val_map_{d}_tie_avg"] = 0.3 + 0.05 * epoch
            record[f"val_chance_{d}"] = 0.2
    return record


def make_run(
    root: Path,
    epochs: int = 6,
    queries: bool = False,
    torn: bool = True,
    finished: bool = True,
    quant: float = 0.0,
    seed: int = 0,
    directions=("i2t", "t2i"),
) -> Path:
    """A run folder: args.json, metrics.jsonl (a torn last line if ``torn``), optionally
    query_curve.jsonl (every 3 epochs) and results.json."""
    root.mkdir(parents=True)
    (root / "args.json").write_text(
        json.dumps({"data": "/x/iapr/prepared", "bits": 32, "seed": seed})
    )
    lines = [json.dumps(metrics_line(e, quant, directions)) for e in range(1, epochs + 1)]
    torn_line = ['{"epoch": 99, "i2t": 1.0, "val_map_i2t": 0.9'] if torn else []
    (root / "metrics.jsonl").write_text("\n".join(lines + torn_line) + ("" if torn else "\n"))
    if queries:
        records = [
            {"epoch": e, **{f"map_{d}": 0.5 + 0.02 * e for d in directions}}
            | {f"map_{d}_tie_avg": 0.5 for d in directions}
            for e in range(3, epochs + 1, 3)
        ]
        text = "".join(json.dumps(r) + "\n" for r in records)
        (root / "query_curve.jsonl").write_text(text + ('{"epoch": 98, "map_i' if torn else ""))
    if finished:
        (root / "results.json").write_text(
            json.dumps({"bits": 32, "best_epoch": 6, "map_i2t": 0.6})
        )
    return root


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.lines}


def test_loss_terms_and_validation_map_without_query_curve(tmp_path):
    fig = run_curves_figure(make_run(tmp_path / "run"))
    assert isinstance(fig, Figure)
    ax_loss, ax_map = fig.axes
    loss = lines_by_label(ax_loss)
    assert list(loss) == ["i2t", "t2i", "i2i", "t2t", "total"]  # quant all zero: not drawn
    assert list(loss["i2i"].get_xdata()) == [1, 2, 3, 4, 5, 6]  # torn epoch 99 skipped
    assert list(loss["i2i"].get_ydata()) == [10.0 - e + 2 for e in range(1, 7)]
    assert list(loss["total"].get_ydata()) == [metrics_line(e)["loss"] for e in range(1, 7)]
    maps = lines_by_label(ax_map)
    assert list(maps) == ["I2T validation", "T2I validation"]
    assert list(maps["T2I validation"].get_xdata()) == [2, 4, 6]
    assert list(maps["T2I validation"].get_ydata()) == pytest.approx([0.41, 0.51, 0.61])
    assert not any(QUERY_LABEL in label for label in maps)
    title = fig._suptitle.get_text()
    assert title.startswith("run · ")  # the run folder's name first
    assert "iapr/prepared" in title and "32 bits" in title and "best epoch 6" in title


@pytest.mark.parametrize("epochs", [1, 2, 6])
def test_the_epoch_axis_ends_at_the_last_epoch(tmp_path, epochs):
    """A 2-epoch run's axis shows epochs 1 and 2, not an empty epoch 3; one epoch gets one
    either side."""
    fig = run_curves_figure(make_run(tmp_path / "run", epochs=epochs, torn=False))
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        if epochs == 1:
            assert (lo, hi) == (0, 2)
        else:
            assert epochs < hi < epochs + 0.5 and 0.5 < lo < 1, (lo, hi)


def test_query_curve_drawn_apart_dashed_in_its_own_colour(tmp_path):
    fig = run_curves_figure(make_run(tmp_path / "run", epochs=9, queries=True))
    maps = lines_by_label(fig.axes[1])
    queries = {k: v for k, v in maps.items() if QUERY_LABEL in k}
    assert sorted(queries) == [f"I2T {QUERY_LABEL}", f"T2I {QUERY_LABEL}"]
    validation_colours = {to_hex(maps[f"{d} validation"].get_color()) for d in ("I2T", "T2I")}
    for line in queries.values():
        assert line.get_linestyle() == "--"
        assert to_hex(line.get_color()) not in validation_colours
        assert list(line.get_xdata()) == [3, 6, 9]  # torn epoch 98 skipped
    assert list(queries[f"I2T {QUERY_LABEL}"].get_ydata()) == pytest.approx([0.56, 0.62, 0.68])
    assert all(maps[f"{d} validation"].get_linestyle() == "-" for d in ("I2T", "T2I"))


def test_quant_drawn_when_nonzero_and_title_without_results(tmp_path):
    fig = run_curves_figure(make_run(tmp_path / "run", quant=0.5, finished=False, torn=False))
    assert "quant" in lines_by_label(fig.axes[0])
    assert "best epoch" not in fig._suptitle.get_text()


def test_plot_run_curves_writes_png_atomically(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", queries=True)
    path = plot_run_curves(run)
    assert path == run / "curves.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = path.read_bytes()

    def crash(self, fname, **kwargs):
        Path(fname).write_bytes(b"half")  # a kill mid-write
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", crash)
    with pytest.raises(KeyboardInterrupt):
        plot_run_curves(run)
    assert path.read_bytes() == before  # the old image is intact
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_a_run_with_no_lines_yet_still_plots(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert plot_run_curves(run).is_file()


def test_seed_curves_one_panel_per_length_one_line_per_seed(tmp_path):
    by_bits = {
        bits: [make_run(tmp_path / f"b{bits}s{s}", seed=s) for s in (0, 1)] for bits in (64, 16)
    }
    fig = seed_curves_figure(by_bits)
    assert [ax.get_title() for ax in fig.axes] == ["16 bits", "64 bits"]
    for ax in fig.axes:
        lines = lines_by_label(ax)
        assert list(lines) == ["seed 0", "seed 1"]
        assert list(lines["seed 1"].get_xdata()) == [2, 4, 6]
        # the mean of I2T (0.3 + 0.05 e) and T2I (0.31 + 0.05 e)
        assert list(lines["seed 1"].get_ydata()) == pytest.approx([0.405, 0.505, 0.605])
    text_only = {32: [make_run(tmp_path / "t", directions=("t2t",))]}
    (line,) = seed_curves_figure(text_only).axes[0].lines
    assert list(line.get_ydata()) == pytest.approx([0.4, 0.5, 0.6])
    out = plot_seed_curves(by_bits, tmp_path / "seed_curves.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
