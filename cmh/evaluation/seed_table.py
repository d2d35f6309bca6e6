"""Mean and spread over seeds of the results of several runs per code length (pure).

A run is ``{"seed": int, "bits": int, "results": <its results.json>}``. For each code length and
direction (I2T, T2I, or T2T for a text-only run) :func:`aggregate` gives, over the seeds, the
mean and the *sample* standard deviation (ddof=1; ``None`` with one seed, shown "n/a") of

- ours: ``map_<d>`` (ties by index) and ``map_<d>_tie_avg`` (tied items averaged), the epoch
  chosen on the validation split, evaluated once on the queries;
- the reference protocol: ``seed_protocol_map_<d>`` (ties by index), the epoch chosen on the
  queries themselves (``--query-every``), optimistic; only over the seeds whose results hold it.

:func:`format_markdown` writes the table ("mean ± std" in every mean cell, 4 decimals) and a
per-seed table. The output of :func:`aggregate` is plain JSON (lists, str keys) and
:func:`format_markdown` takes it back after a round trip through ``json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

DIRECTION_ORDER = ("i2t", "t2i", "i2i", "t2t")
# (statistic name, results.json key with {d} for the direction)
MEASURES = (
    ("map", "map_{d}"),
    ("map_tie_avg", "map_{d}_tie_avg"),
    ("seed_protocol_map", "seed_protocol_map_{d}"),
)
OPTIMISTIC = "queries-selected (optimistic)"
MISSING = "—"


def mean_std(values: Iterable[float]) -> dict:
    """{"mean", "std", "n"} of ``values``: the sample standard deviation (ddof=1), None when
    there is a single value; mean and std None when there is none."""
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def directions_of(results: Iterable[dict]) -> list[str]:
    """The directions d with a ``map_<d>`` key in any of ``results`` (I2T, T2I, I2I, T2T order)."""
    found = {k[4:] for r in results for k in r if k.startswith("map_") and "_" not in k[4:]}
    return [d for d in DIRECTION_ORDER if d in found] + sorted(found - set(DIRECTION_ORDER))


def _per_seed(run: dict, directions: list[str]) -> dict:
    """One seed's numbers: every measure of every direction (None where absent)."""
    r = run["results"]
    row = {"seed": run["seed"], "best_epoch": r.get("best_epoch")}
    row["seed_protocol_epoch"] = r.get("seed_protocol_epoch")
    for d in directions:
        for _, key in MEASURES:
            row[key.format(d=d)] = r.get(key.format(d=d))
        row[f"chance_{d}"] = r.get(f"chance_{d}")
    return row


def _code_length(bits: int, runs: list[dict]) -> dict:
    """The aggregate of the runs of one code length."""
    runs = sorted(runs, key=lambda run: run["seed"])
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{bits} bits: a seed appears twice among {seeds}")
    directions = directions_of(run["results"] for run in runs)
    stats = {}
    for d in directions:
        stats[d] = {}
        for name, key in MEASURES:
            values = [run["results"].get(key.format(d=d)) for run in runs]
            stats[d][name] = mean_std(v for v in values if v is not None)
    margins = sorted({run["results"].get("margin") for run in runs}, key=str)
    return {
        "bits": bits,
        "margin": margins[0] if len(margins) == 1 else margins,
        "seeds": seeds,
        "directions": directions,
        "stats": stats,
        "per_seed": [_per_seed(run, directions) for run in runs],
    }


def aggregate(runs: list[dict]) -> dict:
    """{"code_lengths": [per code length, ascending: {"bits", "margin", "seeds", "directions",
    "stats": {d: {"map" | "map_tie_avg" | "seed_protocol_map": {"mean", "std", "n"}}},
    "per_seed": [{"seed", "best_epoch", "seed_protocol_epoch", "map_<d>", ...}]}]}.
    A results key missing in a run (no --query-every: no seed_protocol_map_<d>) is left out of
    that statistic, never taken as 0; with no seed holding it, mean and std are None."""
    by_bits: dict[int, list[dict]] = {}
    for run in runs:
        by_bits.setdefault(int(run["bits"]), []).append(run)
    return {"code_lengths": [_code_length(b, by_bits[b]) for b in sorted(by_bits)]}


def format_mean_std(stat: dict, n_seeds: int) -> str:
    """ "0.5123 ± 0.0040", "0.5123 ± n/a" with one value, "—" with none; "(n of N seeds)" after
    it when only some seeds hold the number."""
    if stat["mean"] is None:
        return MISSING
    std = "n/a" if stat["std"] is None else f"{stat['std']:.4f}"
    text = f"{stat['mean']:.4f} ± {std}"
    return text if stat["n"] == n_seeds else f"{text} ({stat['n']} of {n_seeds} seeds)"


def _number(value, digits: int = 4) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def summary_table(agg: dict) -> list[str]:
    """The markdown lines of the mean ± std table."""
    lines = [
        f"| bits | margin | seeds | direction | mAP | mAP tie-avg | {OPTIMISTIC} |",
        "|---:|---:|---|---|---:|---:|---:|",
    ]
    for group in agg["code_lengths"]:
        n = len(group["seeds"])
        seeds = " ".join(str(s) for s in group["seeds"])
        for d in group["directions"]:
            cells = [format_mean_std(group["stats"][d][name], n) for name, _ in MEASURES]
            lines.append(
                f"| {group['bits']} | {group['margin']} | {seeds} | {d.upper()} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def per_seed_table(agg: dict) -> list[str]:
    """The markdown lines of the per-seed table."""
    lines = [
        f"| bits | seed | direction | mAP | mAP tie-avg | {OPTIMISTIC} | chance | best epoch "
        "| queries-selected epoch |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for group in agg["code_lengths"]:
        for row in group["per_seed"]:
            for d in group["directions"]:
                cells = [_number(row.get(key.format(d=d))) for _, key in MEASURES]
                cells.append(_number(row.get(f"chance_{d}")))
                epochs = [row.get("best_epoch"), row.get("seed_protocol_epoch")]
                cells += [MISSING if e is None else str(e) for e in epochs]
                lines.append(
                    f"| {group['bits']} | {row['seed']} | {d.upper()} | " + " | ".join(cells) + " |"
                )
    return lines


LEGEND = (
    "mAP: the epoch chosen on the validation split, evaluated once on the queries (ties in "
    "Hamming distance by index); tie-avg: tied items averaged. "
    f"{OPTIMISTIC}: the epoch with the best mean mAP on the queries themselves (the reference "
    "implementation's protocol, `--query-every`), which peeks at the test set and so is an "
    f"upper bound; {MISSING} where the runs did not record it. ± is the sample standard "
    "deviation over seeds (ddof=1); n/a with one seed."
)


def format_markdown(agg: dict) -> str:
    """The mean ± std table, a legend, then the per-seed table, as markdown."""
    return "\n".join(
        [
            "## Mean ± std over seeds",
            "",
            *summary_table(agg),
            "",
            LEGEND,
            "",
            "## Per seed",
            "",
            *per_seed_table(agg),
            "",
        ]
    )
