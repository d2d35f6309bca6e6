"""--query-every: the reference's protocol (the best epoch on the queries) reported beside ours,
never used for anything else: the same weights, the same best.pt, the same main numbers."""

from __future__ import annotations

import json

import pytest
import torch
from learning import assert_diverse

import train
from cmh.evaluation.reference_protocol import seed_protocol


@pytest.mark.compares
def test_query_every_leaves_training_untouched(tiny_prepared, compare_flags, tmp_path):
    flags = ["--data", str(tiny_prepared), *compare_flags, "--pooling", "mean", "--epochs", "3"]
    assert train.main([*flags, "--out", str(tmp_path / "plain")]) == 0
    assert_diverse(tmp_path / "plain")
    assert train.main([*flags, "--out", str(tmp_path / "q"), "--query-every", "1"]) == 0
    for name in ("last.pt", "best.pt"):
        a, b = (torch.load(tmp_path / r / name, weights_only=True) for r in ("plain", "q"))
        assert a["epoch"] == b["epoch"] and a["best_epoch"] == b["best_epoch"]
        for key, tensor in a["model"].items():
            assert torch.equal(tensor, b["model"][key]), (name, key)
    plain, with_q = (
        json.loads((tmp_path / r / "results.json").read_text()) for r in ("plain", "q")
    )
    for key, value in plain.items():
        assert with_q[key] == value, key  # the main numbers and the selection are unchanged
    curve = [json.loads(x) for x in (tmp_path / "q" / "query_curve.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in curve] == [1, 2, 3]
    means = [(r["map_i2t"] + r["map_t2i"]) / 2 for r in curve]
    chosen = curve[means.index(max(means))]
    assert with_q["seed_protocol_epoch"] == chosen["epoch"]
    assert with_q["seed_protocol_map_i2t"] == chosen["map_i2t"]
    assert with_q["seed_protocol_map_t2i"] == chosen["map_t2i"]
    assert "seed_protocol_epoch" not in plain
    assert not (tmp_path / "plain" / "query_curve.jsonl").exists()


def test_seed_protocol_picks_the_best_mean_first_on_ties_and_skips_torn_lines(tmp_path):
    lines = [
        {"epoch": 10, "map_i2t": 0.5, "map_t2i": 0.7, "map_i2t_tie_avg": 0.9},
        {"epoch": 20, "map_i2t": 0.7, "map_t2i": 0.6},  # best mean, 0.65
        {"epoch": 30, "map_i2t": 0.6, "map_t2i": 0.7},  # tie: the first stays
    ]
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"epoch": 40, "map_i2t": 0.99'
    (tmp_path / "query_curve.jsonl").write_text(text)
    got = seed_protocol(tmp_path)
    assert got["seed_protocol_epoch"] == 20
    assert got["seed_protocol_map_i2t"] == 0.7 and got["seed_protocol_map_t2i"] == 0.6
    assert seed_protocol(tmp_path / "none") == {}


def test_query_every_must_be_positive(tiny_prepared, tiny_flags, tmp_path, capsys):
    argv = ["--data", str(tiny_prepared), *tiny_flags, "--out", str(tmp_path / "r")]
    assert train.main([*argv, "--query-every", "0"]) == 2
    assert "--query-every must be >= 1" in capsys.readouterr().err


def test_query_every_may_change_on_resume():
    """It never touches the weights, so a resumed run may start or stop measuring the queries."""
    from cmh.runs.run_folder import RESUME_OVERRIDES

    assert "query_every" in RESUME_OVERRIDES
