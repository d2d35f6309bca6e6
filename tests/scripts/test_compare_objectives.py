"""scripts/compare_objectives.sh and scripts/objective_results.py: the triplet and DCMH
objectives at 16 / 32 / 64 bits on the same data, one table."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from learning import assert_diverse

from scripts import objective_results

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts/compare_objectives.sh")


def made_up_run(out: Path, objective: str, bits: int, maps: dict, seconds=(1.5, 2.5)) -> Path:
    run = out / objective / f"bits{bits}"
    run.mkdir(parents=True)
    args = {"epochs": 4, "solver": "adam", "lr": 1e-3, "lr_schedule": "constant", "batch_size": 8}
    (run / "args.json").write_text(json.dumps(args))
    results = {"bits": bits, "best_epoch": 2}
    for d, v in maps.items():
        results |= {f"map_{d}": v, f"map_{d}_tie_avg": v - 0.01, f"chance_{d}": 0.3}
    (run / "results.json").write_text(json.dumps(results))
    lines = [json.dumps({"epoch": e + 1, "seconds": s}) for e, s in enumerate(seconds)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_table_of_made_up_text_only_runs(tmp_path, capsys):
    made_up_run(tmp_path, "triplet", 16, {"t2t": 0.5})
    made_up_run(tmp_path, "dcmh", 16, {"t2t": 0.45}, seconds=(60.0, 30.0))
    (tmp_path / "dcmh" / "bits64").mkdir()  # unfinished
    assert objective_results.main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "bits64: no results.json (not finished); left out" in captured.err
    lines = [x for x in captured.out.splitlines() if x.startswith("| ")]
    assert lines[0].startswith("| objective | bits | T2T | T2T tie-avg | chance |")
    assert lines[1:] == [
        "| triplet | 16 | 0.5000 | 0.4900 | 0.3000 | 2 (4) | adam lr 0.001 (constant), batch 8 | 0.1 min |",
        "| dcmh | 16 | 0.4500 | 0.4400 | 0.3000 | 2 (4) | adam lr 0.001 (constant), batch 8 | 1.5 min |",
    ]
    saved = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["objective"], r["maps"]) for r in saved] == [
        ("triplet", {"t2t": 0.5}),
        ("dcmh", {"t2t": 0.45}),
    ]
    assert (tmp_path / "results.md").read_text() == captured.out
    assert objective_results.main([str(tmp_path / "empty")]) == 2


def test_refuses_without_data_or_demo(tmp_path):
    r = subprocess.run(
        ["bash", SCRIPT, str(tmp_path / "o"), "--epochs", "1"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "give --data DIR or --demo" in r.stderr
    r = subprocess.run(
        ["bash", SCRIPT, str(tmp_path / "o"), "--demo", "--dcmh"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "--dcmh needs a quoted list" in r.stderr


@pytest.mark.compares
@pytest.mark.slow
def test_end_to_end_on_the_tiny_fixture(tiny_prepared, tmp_path, compare_flags):
    """Both objectives at 16 / 32 / 64 bits, one epoch each; each objective's own flags reach
    only its runs; the table has six rows whose numbers are the runs' results.json."""
    flags = [
        f
        for i, f in enumerate(compare_flags)
        if f not in ("--bits", "--margin") and compare_flags[i - 1] not in ("--bits", "--margin")
    ]
    out = tmp_path / "cmp"
    cmd = ["bash", SCRIPT, str(out), "--data", str(tiny_prepared), *flags, "--epochs", "1",
           "--dcmh", "--objective dcmh --recipe dcmh --batch-size 16"]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for objective in ("triplet", "dcmh"):  # the table holds rankings of codes, not constants
        assert_diverse(out / objective / "bits64")
    for bits in (16, 32, 64):
        t = json.loads((out / "triplet" / f"bits{bits}" / "args.json").read_text())
        d = json.loads((out / "dcmh" / f"bits{bits}" / "args.json").read_text())
        assert (t["objective"], t["triplets"], t["bits"]) == ("triplet", "reference", bits)
        assert (d["objective"], d["solver"], d["lr_schedule"], d["bits"]) == (
            "dcmh",
            "sgd",
            "linear",
            bits,
        )
        assert t["epochs"] == d["epochs"] == 1
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(x["objective"], x["bits"]) for x in rows] == [
        (o, b) for o in ("triplet", "dcmh") for b in (16, 32, 64)
    ]
    for row in rows:
        results = json.loads((Path(row["run"]) / "results.json").read_text())
        assert row["maps"] == {"i2t": results["map_i2t"], "t2i": results["map_t2i"]}
        assert f"| {row['objective']} | {row['bits']} | {results['map_i2t']:.4f} |" in r.stdout
