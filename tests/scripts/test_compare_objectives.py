"""scripts/compare_objectives.sh and scripts/objective_results.py: the reference's triplet set,
all triplets, DCMH and hash proxies on the same data, one table (mean ± std over seeds)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from learning import assert_diverse

from scripts import objective_results

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts/compare_objectives.sh")
NAMES = ("triplet-reference", "triplet-all", "dcmh", "proxy")


def made_up_run(run: Path, bits: int, maps: dict, seconds=(1.5, 2.5), seed=0, query=None) -> Path:
    run.mkdir(parents=True)
    args = {"epochs": 4, "solver": "adam", "lr": 1e-3, "lr_schedule": "constant",
            "batch_size": 8, "seed": seed}  # fmt: skip
    (run / "args.json").write_text(json.dumps(args))
    results = {"bits": bits, "best_epoch": 2}
    for d, v in maps.items():
        results |= {f"map_{d}": v, f"map_{d}_tie_avg": v - 0.01, f"chance_{d}": 0.3}
        if query is not None:
            results[f"seed_protocol_map_{d}"] = v + query
    (run / "results.json").write_text(json.dumps(results))
    records = [{"epoch": e + 1, "seconds": s} for e, s in enumerate(seconds)]
    records += [{"epoch": e + 1, "seconds": 0.0} for e in range(len(records), 3)]
    records[1] |= {f"val_map_{d}": v + 0.1 for d, v in maps.items()}  # the best epoch, 2
    records[1] |= {f"val_map_{d}_tie_avg": 0.0 for d in maps}  # not the selection score
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_table_of_made_up_text_only_runs(tmp_path, capsys):
    made_up_run(tmp_path / "triplet-reference" / "bits16", 16, {"t2t": 0.5})
    made_up_run(tmp_path / "dcmh" / "bits16", 16, {"t2t": 0.45}, seconds=(60.0, 30.0))
    made_up_run(tmp_path / "dcmh" / "bits64", 64, {"t2t": 0.4}).joinpath("results.json").unlink()
    assert objective_results.main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "bits64: no results.json (not finished); left out" in captured.err
    lines = [x for x in captured.out.splitlines() if x.startswith("| ")]
    assert lines[0].startswith("| objective | bits | seeds | validation | T2T | T2T tie-avg | chance |")
    assert lines[1:] == [
        "| triplet-reference | 16 | 0 | 0.6000 ± n/a | 0.5000 ± n/a | 0.4900 ± n/a | 0.3000 | 2 (4) | adam lr 0.001 (constant), batch 8 | 0.1 min |",
        "| dcmh | 16 | 0 | 0.5500 ± n/a | 0.4500 ± n/a | 0.4400 ± n/a | 0.3000 | 2 (4) | adam lr 0.001 (constant), batch 8 | 1.5 min |",
    ]
    saved = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["objective"], r["stats"]["t2t"]["map"]["mean"]) for r in saved] == [
        ("triplet-reference", 0.5),
        ("dcmh", 0.45),
    ]
    assert (tmp_path / "results.md").read_text() == captured.out
    assert objective_results.main([str(tmp_path / "empty")]) == 2


def test_mean_and_sample_std_over_seeds_and_the_queries_column(tmp_path, capsys):
    for seed, value, seconds in ((0, 0.6, (30.0,)), (1, 0.7, (90.0,)), (2, 0.8, (60.0,))):
        made_up_run(tmp_path / "proxy" / "bits32" / f"seed{seed}", 32,
                    {"i2t": value, "t2i": value - 0.1}, seconds, seed, query=0.02)  # fmt: skip
    assert objective_results.main([str(tmp_path)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| ")]
    assert lines[0] == (
        "| objective | bits | seeds | validation | I2T | T2I | I2T tie-avg | T2I tie-avg | I2T chosen on "
        "queries | T2I chosen on queries | chance | epoch chosen (of) | optimiser | training "
        "time per run |"
    )
    assert lines[1] == (
        "| proxy | 32 | 0 1 2 | 0.7500 ± 0.1000 | 0.7000 ± 0.1000 | 0.6000 ± 0.1000 | 0.6900 ± 0.1000 | "
        "0.5900 ± 0.1000 | 0.7200 ± 0.1000 | 0.6200 ± 0.1000 | 0.3000 | 2, 2, 2 (4) | adam lr "
        "0.001 (constant), batch 8 | 1.0 min |"
    )


def test_refusals(tmp_path):
    def run(*argv):
        return subprocess.run(["bash", SCRIPT, str(tmp_path / "o"), *argv],
                              capture_output=True, text=True)  # fmt: skip

    r = run("--epochs", "1")
    assert r.returncode == 2 and "give --data DIR or --demo" in r.stderr
    r = run("--demo", "--dcmh")
    assert r.returncode == 2 and "--dcmh needs a quoted list" in r.stderr
    r = run("--demo", "--objectives", "proxy triplets")
    assert r.returncode == 2 and "unknown name 'triplets'" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.compares
@pytest.mark.slow
def test_end_to_end_on_the_tiny_fixture(tiny_prepared, tmp_path, compare_flags):
    """The four objectives at 64 bits, one epoch each; each objective's own flags reach only its
    runs; the table has a row per objective whose numbers are the runs' results.json."""
    flags = [f for i, f in enumerate(compare_flags)
             if f not in ("--bits", "--margin") and compare_flags[i - 1] not in ("--bits", "--margin")]  # fmt: skip
    out = tmp_path / "cmp"
    cmd = ["bash", SCRIPT, str(out), "--data", str(tiny_prepared), "--bits", "64", *flags,
           "--epochs", "1", "--dcmh", "--objective dcmh --recipe dcmh --batch-size 16",
           "--proxy", "--objective proxy --proxy-threshold 0.2"]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    args = {n: json.loads((out / n / "bits64" / "args.json").read_text()) for n in NAMES}
    for name in NAMES:  # the table holds rankings of codes, not constants
        assert_diverse(out / name / "bits64")
        assert args[name]["bits"] == 64 and args[name]["epochs"] == 1
    assert [args[n]["objective"] for n in NAMES] == ["triplet", "triplet", "dcmh", "proxy"]
    assert (args["triplet-reference"]["triplets"], args["triplet-all"]["triplets"]) == (
        "reference",
        "all",
    )
    assert (args["dcmh"]["solver"], args["dcmh"]["lr_schedule"]) == ("sgd", "linear")
    assert args["proxy"]["proxy_threshold"] == 0.2 and args["triplet-all"]["proxy_threshold"] != 0.2
    assert not (out / "triplet-all" / "bits32").exists()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(x["objective"], x["bits"]) for x in rows] == [(n, 64) for n in NAMES]
    for row in rows:
        results = json.loads((Path(row["runs"][0]) / "results.json").read_text())
        assert row["stats"]["i2t"]["map"]["mean"] == results["map_i2t"]
        line = next(x for x in r.stdout.splitlines() if x.startswith(f"| {row['objective']} | 64 | 0 | "))
        assert f" | {results['map_i2t']:.4f} ± n/a | {results['map_t2i']:.4f} ± n/a | " in line
