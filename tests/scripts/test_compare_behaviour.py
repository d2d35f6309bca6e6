"""scripts/compare_behaviour.py: its comparison of metrics.jsonl files, its parser of train.py's
printed final table and its refusal of an unknown revision (no training runs here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_behaviour.py"


@pytest.fixture(scope="module")
def cb():
    spec = importlib.util.spec_from_file_location("compare_behaviour", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECORDS = [
    {"epoch": 1, "i2t": 12.08, "loss": 41.17573348335598, "train_seconds": 45.2,
     "lr": {"image": 0.0003, "text": 0.0003}, "seconds": 45.2},
    {"epoch": 2, "loss": 38.1106832753057, "train_seconds": 78.0,
     "lr": {"image": 0.0003, "text": 0.0003}, "val_map_i2t": 0.45072858588593734,
     "seconds": 96.27},
]  # fmt: skip


def _write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _pair(tmp_path, new_records: list[dict]) -> tuple[Path, Path]:
    old = _write(tmp_path / "old" / "metrics.jsonl", RECORDS)
    return old, _write(tmp_path / "new" / "metrics.jsonl", new_records)


def test_identical_but_for_the_seconds_is_identical(cb, tmp_path):
    timed = [{**r, "seconds": r["seconds"] * 3, "train_seconds": 1.0} for r in RECORDS]
    assert cb.compare_jsonl(*_pair(tmp_path, timed)) is None


def test_a_changed_loss_is_reported_with_its_line_and_key(cb, tmp_path):
    changed = [dict(r) for r in RECORDS]
    changed[1]["loss"] = 38.11068327530571  # the next float up
    found = cb.compare_jsonl(*_pair(tmp_path, changed))
    assert found.startswith("metrics.jsonl line 2: key 'loss'")
    assert "38.1106832753057 vs 38.11068327530571" in found


def test_a_nested_or_missing_key_is_reported(cb, tmp_path):
    nested = [dict(r) for r in RECORDS]
    nested[0] = {**RECORDS[0], "lr": {"image": 0.0003, "text": 0.0001}}
    assert "line 1: key 'lr.text'" in cb.compare_jsonl(*_pair(tmp_path, nested))
    missing = [dict(r) for r in RECORDS]
    del missing[1]["val_map_i2t"]
    assert "line 2: key 'val_map_i2t' only in old" in cb.compare_jsonl(*_pair(tmp_path, missing))


def test_different_line_counts_are_reported(cb, tmp_path):
    found = cb.compare_jsonl(*_pair(tmp_path, RECORDS[:1]))
    assert found == "metrics.jsonl: 2 lines (old) vs 1 lines (new)"


def test_an_int_is_not_its_float(cb):
    assert cb.first_difference({"epoch": 1}, {"epoch": 1.0}) == "key 'epoch': 1 vs 1.0"


def test_results_keep_their_numbers_only(cb):
    results = {"map_i2t": 0.76, "best_epoch": 8, "seconds": 3.0, "run": "/tmp/x", "ok": True}
    assert cb.metric_entries(results) == {"map_i2t": 0.76, "best_epoch": 8}


# train.py's final lines at d44c9e6, as printed (a validation line first: not the final table)
OUTPUT = """\
23:47:46 epoch 8  loss 16.3530  val_map_i2t 0.7514  val_map_i2t_tie_avg 0.7512  val_map_t2i 0.7482  73.8s
23:48:23 final evaluation (queries vs database, best epoch 8):
direction   mAP(index)  mAP(tie-avg)  chance
I2T         0.7603      0.7607        0.4045
T2I         0.7749      0.7748        0.4045
23:48:23 run folder /tmp/cb_probe/run (best epoch 8): args.json, best.pt
"""


def test_the_final_maps_are_parsed_from_the_printed_table(cb):
    assert cb.final_maps(OUTPUT) == (0.7603, 0.7749)
    assert cb.final_maps(OUTPUT.split("direction")[0]) is None  # no final table: no numbers


def test_compare_runs_names_a_failed_run_and_a_printed_difference(cb, tmp_path):
    old = {"rc": 0, "out": tmp_path, "log": tmp_path / "old.log", "maps": (0.5, 0.6)}
    assert cb.compare_runs(old, {**old, "rc": 1}).startswith("new run failed (exit 1")
    assert cb.compare_runs(old, old).startswith("old run wrote no metrics.jsonl")
    _write(tmp_path / "metrics.jsonl", RECORDS)
    (tmp_path / "results.json").write_text(json.dumps({"map_i2t": 0.5, "seconds": 1.0}))
    assert cb.compare_runs(old, old) == "identical"
    assert cb.compare_runs(old, {**old, "maps": (0.5, 0.7)}) == (
        "printed mAP: (0.5, 0.6) vs (0.5, 0.7)"
    )


def test_an_entry_added_on_purpose_is_named_and_any_other_is_a_difference(cb, tmp_path):
    sides = {}
    for side, extra in (("old", {}), ("new", {"epochs": 8}), ("other", {"epochs": 8, "x": 1})):
        (tmp_path / side).mkdir()
        _write(tmp_path / side / "metrics.jsonl", RECORDS)
        (tmp_path / side / "results.json").write_text(json.dumps({"map_i2t": 0.5, **extra}))
        sides[side] = {"rc": 0, "out": tmp_path / side, "log": tmp_path / "x.log",
                       "maps": (0.5, 0.6)}
    assert cb.compare_runs(sides["old"], sides["new"]) == (
        f"identical; results.json adds 'epochs' ({cb.ADDED_SINCE['epochs']})"
    )
    assert cb.compare_runs(sides["old"], sides["other"]) == "results.json: key 'x' only in new"
    assert cb.compare_runs(sides["new"], sides["old"]) == "results.json: key 'epochs' only in old"


@pytest.mark.parametrize("flag", ["--old", "--new"])
def test_an_unknown_revision_is_refused_in_one_line(cb, flag, tmp_path, capsys):
    out = tmp_path / "out"
    assert cb.main([flag, "no-such-rev-0123", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {flag} no-such-rev-0123: not a commit of the repository {cb.REPO}"
    ]
    assert not out.exists()  # refused before any work


def test_an_unknown_case_is_refused(cb, capsys):
    assert cb.main(["--only", "demo", "nope"]) == 2
    assert "error: --only nope: unknown case" in capsys.readouterr().err
