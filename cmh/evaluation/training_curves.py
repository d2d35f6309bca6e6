"""Training curves of a run folder: loss terms, validation mAP and, when recorded, the query curve.

:func:`plot_run_curves` writes ``RUN/curves.png`` from ``metrics.jsonl`` (one line per epoch:
the loss terms, and ``val_map_<d>`` on validated epochs) and, when ``--query-every`` wrote one,
``query_curve.jsonl`` (mAP of the test queries against the database every K epochs, the
reference implementation's protocol). The query curve is drawn apart, dashed in its own colour:
it is reported, never used to choose the epoch. :func:`plot_seed_curves` draws every seed's
validation curve per code length. A line torn by a kill mid-write is skipped. No pyplot: no
global figure state and no backend switch (as in :mod:`cmh.evaluation.plots`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cmh.utils.atomic_io import atomic_path

LOSS_TERMS = ("i2t", "t2i", "i2i", "t2t", "quant")
DIRECTION_ORDER = ("i2t", "t2i", "i2i", "t2t")
QUERY_LABEL = "queries (reference protocol, not used for selection)"
QUERY_COLOURS = {"i2t": "tab:red", "t2i": "tab:purple", "i2i": "tab:brown", "t2t": "tab:pink"}
log = logging.getLogger("train")


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of ``path``, one a line; [] when it does not exist. A line that does not
    parse as an object (torn by a kill mid-write) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "epoch" in record:
            records.append(record)
    return records


def _read_json(path: Path) -> dict:
    """``path`` as a dict; {} when it is missing or torn."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def directions_in(records: list[dict], prefix: str) -> list[str]:
    """The directions d with a ``<prefix><d>`` key (not the tie-avg one) in any record, in the
    order I2T, T2I, I2I, T2T."""
    pattern = re.compile(re.escape(prefix) + r"([a-z0-9]+)$")
    found = {m.group(1) for r in records for k in r if (m := pattern.match(k))}
    return [d for d in DIRECTION_ORDER if d in found] + sorted(found - set(DIRECTION_ORDER))


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the records that hold ``key``."""
    kept = [r for r in records if isinstance(r.get(key), (int, float))]
    return [r["epoch"] for r in kept], [float(r[key]) for r in kept]


def run_title(run_dir: Path) -> str:
    """The run a curve shows: the run folder's name, the data folder's name (with its parent for a plain "prepared"),
    the code length and, once results.json exists, the best epoch."""
    args, results = _read_json(run_dir / "args.json"), _read_json(run_dir / "results.json")
    data = Path(str(args.get("data") or "?"))
    folder = f"{data.parent.name}/{data.name}" if data.name == "prepared" else data.name
    bits = results.get("bits", args.get("bits", "?"))
    parts = [Path(run_dir).name, folder, f"{bits} bits"]
    if results.get("best_epoch") is not None:
        parts.append(f"best epoch {results['best_epoch']}")
    return " · ".join(parts)


def _epoch_axis(ax, epochs: list[int]) -> None:
    """Whole epochs on the x axis, from the run's first epoch to its last (a small margin each
    side, nothing beyond); one epoch alone gets one epoch either side rather than ticks 0.96 ..."""
    if epochs:
        lo, hi = min(epochs), max(epochs)
        pad = 1 if hi == lo else max(0.1, 0.03 * (hi - lo))
        ax.set_xlim(lo - pad, hi + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_loss(ax, metrics: list[dict]) -> None:
    """Each loss term per epoch (quant only when nonzero somewhere) and the total."""
    for term in LOSS_TERMS:
        epochs, values = series(metrics, term)
        if epochs and (term != "quant" or any(v != 0 for v in values)):
            ax.plot(epochs, values, marker=".", label=term)
    epochs, values = series(metrics, "loss")
    if epochs:
        ax.plot(epochs, values, marker=".", color="black", linewidth=2, label="total")
    ax.set(title="training loss", xlabel="epoch", ylabel="loss")
    _epoch_axis(ax, [r["epoch"] for r in metrics])
    if ax.lines:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _draw_map(ax, metrics: list[dict], queries: list[dict]) -> None:
    """Validation mAP per evaluation (solid) and the query curve (dashed, its own colours)."""
    for d in directions_in(metrics, "val_map_"):
        epochs, values = series(metrics, f"val_map_{d}")
        ax.plot(epochs, values, marker="o", label=f"{d.upper()} validation")
    for d in directions_in(queries, "map_"):
        epochs, values = series(queries, f"map_{d}")
        colour = QUERY_COLOURS.get(d, "tab:gray")
        ax.plot(epochs, values, "--", marker="x", color=colour, label=f"{d.upper()} {QUERY_LABEL}")
    if not ax.lines:
        ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="mAP (epoch chosen on validation)", xlabel="epoch", ylabel="mAP", ylim=(0, 1.02))
    _epoch_axis(ax, [r["epoch"] for r in metrics])
    if ax.lines:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def run_curves_figure(run_dir: str | Path) -> Figure:
    """The figure of :func:`plot_run_curves`: loss terms (left), validation mAP and the query
    curve if any (right), titled with :func:`run_title`. Lines carry labels: a loss term's
    name, "total", "<D> validation", "<D> queries (reference protocol, ...)"."""
    run_dir = Path(run_dir)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    queries = read_jsonl(run_dir / "query_curve.jsonl")
    fig = Figure(figsize=(11, 4.5))
    ax_loss, ax_map = fig.subplots(1, 2)
    _draw_loss(ax_loss, metrics)
    _draw_map(ax_map, metrics, queries)
    fig.suptitle(run_title(run_dir))
    fig.tight_layout()
    return fig


def save_atomic(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """``fig`` as PNG written to a temporary file beside ``path``, then renamed onto it, so a
    reader never sees a half-written image."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def plot_run_curves(run_dir: str | Path) -> Path:
    """Write ``RUN/curves.png`` (:func:`run_curves_figure`) atomically; its path (~0.3 s)."""
    run_dir = Path(run_dir)
    return save_atomic(run_curves_figure(run_dir), run_dir / "curves.png")


# Training redraws RUN/curves.png after an epoch that ends this long after the last drawing (or
# the start): every epoch of a real run (minutes each), not 0.3 s per epoch of a tiny one
CURVES_EVERY_S = 30.0


@contextlib.contextmanager
def curves_kept_current(run_dir: Path, enabled: bool = True) -> Iterator[Callable[[bool], None]]:
    """For a training loop: the function to call after each epoch's metrics line is written,
    ``after_epoch(last)``, which redraws ``RUN/curves.png`` after the last epoch or when the last
    drawing (or the start) is CURVES_EVERY_S old; a loop that stops early (Ctrl-C, an error)
    has the epochs it wrote since the last drawing drawn on its way out. ``enabled`` False
    (another rank than 0): nothing is drawn."""
    metrics = Path(run_dir) / "metrics.jsonl"
    state = {"at": time.monotonic(), "epochs": len(read_jsonl(metrics))}

    def draw() -> None:
        plot_run_curves(run_dir)
        state.update(at=time.monotonic(), epochs=len(read_jsonl(metrics)))

    def after_epoch(last: bool) -> None:
        if enabled and (last or time.monotonic() - state["at"] >= CURVES_EVERY_S):
            draw()

    try:
        yield after_epoch
    except BaseException:
        if enabled and len(read_jsonl(metrics)) > state["epochs"]:
            try:
                draw()
            except Exception as e:  # the stop's own cause is what propagates
                log.warning("%s not redrawn: %s", Path(run_dir) / "curves.png", e)
        raise


def mean_validation_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """(epochs, mean over the directions of val_map_<d>) of the validated epochs of a run."""
    metrics = read_jsonl(Path(run_dir) / "metrics.jsonl")
    keys = [f"val_map_{d}" for d in directions_in(metrics, "val_map_")]
    kept = [r for r in metrics if keys and all(k in r for k in keys)]
    return [r["epoch"] for r in kept], [sum(r[k] for k in keys) / len(keys) for r in kept]


def seed_label(run_dir: Path) -> str:
    """ "seed S" from the run's args.json, else the folder's name."""
    seed = _read_json(Path(run_dir) / "args.json").get("seed")
    return f"seed {seed}" if seed is not None else Path(run_dir).name


def seed_curves_figure(run_dirs_by_bits: dict[int, list[Path]]) -> Figure:
    """One subplot per code length (ascending), one line per run: the mean of the directions'
    validation mAP per validated epoch, labelled "seed S"."""
    lengths = sorted(run_dirs_by_bits)
    fig = Figure(figsize=(4.5 * max(1, len(lengths)), 4))
    axes = fig.subplots(1, max(1, len(lengths)), squeeze=False)[0]
    for ax, bits in zip(axes, lengths, strict=False):
        for run_dir in run_dirs_by_bits[bits]:
            epochs, values = mean_validation_curve(run_dir)
            ax.plot(epochs, values, marker="o", label=seed_label(run_dir))
        ax.set(title=f"{bits} bits", xlabel="epoch", ylabel="validation mAP (mean of directions)")
        _epoch_axis(ax, [x for line in ax.lines for x in line.get_xdata()])
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if not lengths:
        axes[0].text(0.5, 0.5, "no runs", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle("validation mAP per seed (the curve the epoch is chosen on)")
    fig.tight_layout()
    return fig


def plot_seed_curves(run_dirs_by_bits: dict[int, list[Path]], out_png: str | Path) -> Path:
    """Write :func:`seed_curves_figure` to ``out_png`` atomically; its path."""
    return save_atomic(seed_curves_figure(run_dirs_by_bits), Path(out_png))
