"""The plots of a run: precision-recall over Hamming radius and precision@N, every direction.

Each figure is titled with the run (run folder, data, bits, epoch), its legend gives each direction's mAP, a
dashed line marks chance and the precision axis runs from 0 to 1. No pyplot: no global figure
state and no backend switch, so plotting is safe in tests and worker processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmh.evaluation.encoding import DIRECTIONS
from cmh.evaluation.hamming_metrics import chance_level
from cmh.evaluation.retrieval_curves import pr_curve_by_radius, precision_at_n


def plot_title(
    run: str | Path, data: str | Path, bits: int, epoch: int | None, checkpoint: str | Path = "best.pt"
) -> str:
    """The run a plot shows: the run folder's name, the data folder's name (with its parent for
    a plain "prepared"), the code length and the checkpoint's epoch ("best epoch N" for best.pt)."""
    data, name = Path(data), Path(checkpoint).name
    folder = f"{data.parent.name}/{data.name}" if data.name == "prepared" else data.name
    when = f"best epoch {epoch}" if name == "best.pt" else f"{name} epoch {epoch}"
    return f"{Path(run).name} · {folder} · {bits} bits · {when}"


EMPTY_RULE = "a radius with nothing retrieved counts as precision 0"
LABEL_GAP = 0.06  # radius labels closer than this (axis units, both axes 0..1) are left out


def radius_marks(bits: int) -> list[int]:
    """The Hamming radii labelled on the PR curve: 0, 1, 2 and quarters of the code length."""
    return sorted({t for t in (0, 1, 2, bits // 4, bits // 2, bits) if 0 <= t <= bits})


def plot_figures(
    queries: dict, database: dict, directions=("i2t", "t2i"), results=None, title: str = ""
) -> dict:
    """{file name: matplotlib Figure}: PR over Hamming radius (a few radii labelled, none over
    another; the axis label states the empty-result rule of cmh.evaluation.retrieval_curves) and
    precision@N, every direction; ``title`` (plot_title) on both; each legend entry with the
    direction's mAP (``results["map_<d>"]``); a dashed line at chance (cmh.evaluation.hamming_metrics.
    chance_level: the mean fraction of the database relevant to a query, which is the precision
    of a random ranking at any cut-off); the precision axis from 0 to 1."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend switch

    results = results or {}
    n_db = len(database["labels"])
    ns = np.unique(np.linspace(1, n_db, num=min(50, n_db)).astype(int))
    figs = {name: Figure(figsize=(5.5, 4.5)) for name in ("pr_curve.png", "precision_at_n.png")}
    ax_pr, ax_pn = (fig.subplots() for fig in figs.values())
    labelled: list[tuple[float, float]] = []  # the PR curve's radius labels so far
    for d in directions:
        q_mod, db_mod = DIRECTIONS[d]
        if q_mod not in queries or db_mod not in database:
            continue
        args = (queries[q_mod], database[db_mod], queries["labels"], database["labels"])
        label = d.upper() + (f"  mAP {results[f'map_{d}']:.3f}" if f"map_{d}" in results else "")
        precision, recall = pr_curve_by_radius(*args)
        (line,) = ax_pr.plot(recall, precision, marker=".", label=label)
        for t in radius_marks(len(precision) - 1):
            xy = (recall[t], precision[t])
            if any(np.hypot(xy[0] - x, xy[1] - y) < LABEL_GAP for x, y in labelled):
                continue  # it would overprint a label already there
            labelled.append(xy)
            ax_pr.annotate(
                f"r={t}",
                xy,
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                color=line.get_color(),
            )
        ax_pn.plot(ns, precision_at_n(*args, ns), label=label)
    ax_pr.set(xlabel=f"recall (r: Hamming radius; {EMPTY_RULE})", ylabel="precision",
              xlim=(0, 1.02))  # fmt: skip
    ax_pn.set(xlabel="N", ylabel="precision@N")
    chance = chance_level(queries["labels"], database["labels"])
    for ax, what in ((ax_pr, "PR over Hamming radius"), (ax_pn, "Precision at N")):
        ax.axhline(chance, linestyle="--", color="gray", label=f"chance {chance:.3f}")
        ax.set(title=f"{what}\n{title}" if title else what, ylim=(0, 1.02))
        ax.legend()
        ax.grid(alpha=0.3)
    for fig in figs.values():
        fig.tight_layout()
    return figs


def save_plots(
    queries: dict,
    database: dict,
    out: Path,
    directions=("i2t", "t2i"),
    *,
    results=None,
    title: str = "",
) -> list[Path]:
    """The figures of plot_figures written as PNG into ``out``; their paths."""
    paths = []
    for name, fig in plot_figures(queries, database, directions, results, title).items():
        fig.savefig(out / name, dpi=120)
        paths.append(out / name)
    return paths
