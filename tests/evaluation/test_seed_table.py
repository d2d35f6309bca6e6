"""cmh.evaluation.seed_table: mean and sample std over seeds against numpy / statistics on made-up runs;
the markdown has "mean ± std" in every mean cell and the per-seed numbers."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from cmh.evaluation.seed_table import OPTIMISTIC, aggregate, format_markdown


def made_up_run(seed: int, bits: int, directions=("i2t", "t2i"), protocol=True) -> dict:
    """A run dict with random (seeded by seed and bits) results.json numbers for ``directions``."""
    rng = np.random.default_rng(1000 * seed + bits)
    results = {"bits": bits, "margin": bits * 12 / 32, "best_epoch": 3 + seed}
    for d in directions:
        results[f"map_{d}"] = float(rng.uniform(0.3, 0.8))
        results[f"map_{d}_tie_avg"] = float(rng.uniform(0.3, 0.8))
        results[f"chance_{d}"] = 0.25
        if protocol:
            results[f"seed_protocol_map_{d}"] = float(rng.uniform(0.3, 0.8))
    if protocol:
        results["seed_protocol_epoch"] = 10 + seed
    return {"seed": seed, "bits": bits, "results": results}


def group(agg: dict, bits: int) -> dict:
    (g,) = [g for g in agg["code_lengths"] if g["bits"] == bits]
    return g


def summary_rows(markdown: str) -> list[list[str]]:
    """The cells of the mean ± std table's data rows."""
    table = markdown.split("## Per seed")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]


def per_seed_rows(markdown: str) -> list[list[str]]:
    table = markdown.split("## Per seed")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]


def test_mean_and_sample_std_match_numpy_and_statistics():
    runs = [made_up_run(s, b) for b in (16, 32) for s in (0, 1, 2)]
    agg = aggregate(runs)
    assert [g["bits"] for g in agg["code_lengths"]] == [16, 32]
    for bits in (16, 32):
        g = group(agg, bits)
        assert g["seeds"] == [0, 1, 2] and g["directions"] == ["i2t", "t2i"]
        mine = [r["results"] for r in runs if r["bits"] == bits]
        for d in ("i2t", "t2i"):
            for stat, key in (
                ("map", f"map_{d}"),
                ("map_tie_avg", f"map_{d}_tie_avg"),
                ("seed_protocol_map", f"seed_protocol_map_{d}"),
            ):
                values = [r[key] for r in mine]
                got = g["stats"][d][stat]
                assert got["n"] == 3
                assert got["mean"] == pytest.approx(np.mean(values), abs=1e-12)
                assert got["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
                assert got["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)


def test_hand_computed_case():
    runs = [made_up_run(s, 32) for s in (0, 1)]
    runs[0]["results"]["map_i2t"], runs[1]["results"]["map_i2t"] = 0.5, 0.7
    stat = group(aggregate(runs), 32)["stats"]["i2t"]["map"]
    assert stat["mean"] == pytest.approx(0.6)
    assert stat["std"] == pytest.approx(0.1 * 2**0.5)  # sqrt((0.01 + 0.01) / (2 - 1))
    assert "0.6000 ± 0.1414" in format_markdown(aggregate(runs))


def test_markdown_has_mean_pm_std_in_every_mean_cell_and_the_per_seed_numbers():
    runs = [made_up_run(s, b) for b in (16, 32, 64) for s in (0, 1, 2)]
    agg = aggregate(runs)
    text = format_markdown(agg)
    assert OPTIMISTIC in text
    rows = summary_rows(text)
    assert len(rows) == 3 * 2
    for row in rows:
        assert all(" ± " in cell for cell in row[4:7]), row
    per_seed = per_seed_rows(text)
    assert len(per_seed) == 9 * 2
    for run in runs:
        r = run["results"]
        for d in ("i2t", "t2i"):
            row = [x for x in per_seed if x[:3] == [str(run["bits"]), str(run["seed"]), d.upper()]]
            assert len(row) == 1
            expected = [r[f"map_{d}"], r[f"map_{d}_tie_avg"], r[f"seed_protocol_map_{d}"]]
            assert row[0][3:6] == [f"{v:.4f}" for v in expected]
            assert row[0][7:9] == [str(r["best_epoch"]), str(r["seed_protocol_epoch"])]
    g = group(agg, 64)
    assert [p["seed"] for p in g["per_seed"]] == [0, 1, 2]
    assert g["per_seed"][1]["map_t2i"] == runs[7]["results"]["map_t2i"]


def test_one_seed_std_is_na_not_zero():
    agg = aggregate([made_up_run(0, 32)])
    stat = group(agg, 32)["stats"]["i2t"]["map"]
    assert stat["std"] is None and stat["n"] == 1
    rows = summary_rows(format_markdown(agg))
    assert all(cell.endswith("± n/a") for row in rows for cell in row[4:7])
    assert "± 0.0000" not in format_markdown(agg)


def test_missing_seed_protocol_keys_are_left_out_never_zero():
    none = aggregate([made_up_run(s, 32, protocol=False) for s in (0, 1)])
    stat = group(none, 32)["stats"]["t2i"]["seed_protocol_map"]
    assert stat == {"mean": None, "std": None, "n": 0}
    rows = summary_rows(format_markdown(none))
    assert all(row[6] == "—" for row in rows) and all(" ± " in c for r in rows for c in r[4:6])
    assert all(row[5] == "—" and row[8] == "—" for row in per_seed_rows(format_markdown(none)))

    some = [made_up_run(0, 32), made_up_run(1, 32, protocol=False), made_up_run(2, 32)]
    stat = group(aggregate(some), 32)["stats"]["i2t"]["seed_protocol_map"]
    values = [
        some[0]["results"]["seed_protocol_map_i2t"],
        some[2]["results"]["seed_protocol_map_i2t"],
    ]
    assert stat["n"] == 2 and stat["mean"] == pytest.approx(np.mean(values))
    assert stat["std"] == pytest.approx(np.std(values, ddof=1))
    assert "(2 of 3 seeds)" in format_markdown(aggregate(some))


def test_text_only_runs():
    runs = [made_up_run(s, 16, directions=("t2t",)) for s in (3, 5)]
    agg = aggregate(runs)
    g = group(agg, 16)
    assert g["directions"] == ["t2t"] and set(g["stats"]) == {"t2t"}
    values = [r["results"]["map_t2t"] for r in runs]
    assert g["stats"]["t2t"]["map"]["std"] == pytest.approx(np.std(values, ddof=1))
    rows = summary_rows(format_markdown(agg))
    assert [row[3] for row in rows] == ["T2T"] and rows[0][2] == "3 5"


def test_json_round_trip_and_duplicate_seed():
    agg = aggregate([made_up_run(s, b) for b in (16, 32) for s in (0, 1)])
    assert format_markdown(json.loads(json.dumps(agg))) == format_markdown(agg)
    with pytest.raises(ValueError, match="seed appears twice"):
        aggregate([made_up_run(0, 16), made_up_run(0, 16)])
