"""The seed sweep scripts: run_all_bits.sh --seeds end to end on the tiny fixture (slow),
seed_results.py and compare_recipes.py on made-up run folders, reproduce_seed.sh's train.py
calls through a stand-in train.py (``--recipe seed`` is checked by train.py itself)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts import compare_recipes, seed_results

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}

FAKE_TRAIN = """
import argparse, json, pathlib, sys
p = argparse.ArgumentParser()
for flag in ("--out", "--data", "--recipe", "--epochs", "--device"):
    p.add_argument(flag)
for flag in ("--bits", "--seed", "--query-every"):
    p.add_argument(flag, type=int)
p.add_argument("--margin", type=float)
p.add_argument("--demo", action="store_true")
args = p.parse_args()
out = pathlib.Path(args.out)
out.mkdir(parents=True)
(out / "args.json").write_text(json.dumps({**vars(args), "argv": sys.argv[1:]}))
shift = 0.1 if args.recipe == "seed" else 0.0
r = {"bits": args.bits, "margin": args.margin, "best_epoch": 1}
for k, d in enumerate(("i2t", "t2i")):
    r[f"map_{d}"] = r[f"map_{d}_tie_avg"] = 0.4 + shift + 0.01 * args.seed + 0.001 * k
    r[f"seed_protocol_map_{d}"] = r[f"map_{d}"] + 0.05
(out / "results.json").write_text(json.dumps(r))
"""


def made_up_run(
    folder: Path, seed: int, bits: int, maps: dict, protocol: dict | None = None
) -> Path:
    """OUT/bits{B}/seed{S} with args.json and results.json (seed_protocol_* from ``protocol``)."""
    run = folder / f"bits{bits}" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"seed": seed, "bits": bits, "data": "/d/prepared"}))
    results = {"bits": bits, "margin": bits * 12 / 32, "best_epoch": 2}
    for d, v in maps.items():
        results |= {f"map_{d}": v, f"map_{d}_tie_avg": v - 0.01, f"chance_{d}": 0.2}
    for d, v in (protocol or {}).items():
        results[f"seed_protocol_map_{d}"] = v
    if protocol:
        results["seed_protocol_epoch"] = 4
    (run / "results.json").write_text(json.dumps(results))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 2, "val_map_i2t": 0.5}) + "\n")
    return run


def mean_cells(markdown: str) -> list[str]:
    """The mAP, tie-avg and queries-selected cells of results.md's mean ± std table."""
    table = markdown.split("## Per seed")[0]
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| ")]
    return [cell.strip() for row in rows[1:] for cell in row[4:7]]


def test_seed_results_on_made_up_folders(tmp_path, capsys):
    values = {0: 0.50, 1: 0.56, 2: 0.59}
    for s, v in values.items():
        made_up_run(tmp_path, s, 32, {"i2t": v, "t2i": v + 0.02}, {"i2t": v + 0.03})
    unfinished = tmp_path / "bits32" / "seed3"
    unfinished.mkdir()
    assert seed_results.main([str(tmp_path)]) == 0
    assert f"{unfinished} has no results.json" in capsys.readouterr().err
    record = json.loads((tmp_path / "results.json").read_text())
    (g,) = record["code_lengths"]
    assert g["seeds"] == [0, 1, 2] and record["unfinished"] == [str(unfinished)]
    assert [p["map_i2t"] for p in g["per_seed"]] == list(values.values())
    assert g["stats"]["i2t"]["map"]["std"] == pytest.approx(np.std(list(values.values()), ddof=1))
    assert g["stats"]["t2i"]["seed_protocol_map"]["n"] == 0
    md = (tmp_path / "results.md").read_text()
    mean = np.mean(list(values.values()))
    assert f"{mean:.4f} ± {np.std(list(values.values()), ddof=1):.4f}" in md
    assert (tmp_path / "seed_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert seed_results.main([str(tmp_path / "nothing")]) == 2
    assert "no finished run under" in capsys.readouterr().err


def test_compare_recipes_on_made_up_folders(tmp_path, capsys):
    seed_maps = {0: 0.58, 1: 0.60, 2: 0.61}
    for s, v in seed_maps.items():
        for bits in (16, 32):
            made_up_run(tmp_path / "seed-recipe", s, bits, {"i2t": v, "t2i": v}, {"i2t": v + 0.01})
            made_up_run(tmp_path / "default-recipe", s, bits, {"i2t": v - 0.1, "t2i": v - 0.1})
    assert compare_recipes.main([str(tmp_path)]) == 0
    text = (tmp_path / "comparison.md").read_text()
    assert text in capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
    rows = [r for r in rows if r and r[0].isdigit()]
    by = {(r[0], r[1], r[2]): r[4:] for r in rows}
    v = list(seed_maps.values())
    seed_val = by["32", "reference recipe (`--recipe seed`)", "validation split"]
    assert seed_val == [f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}"] * 2
    seed_q = by["32", "reference recipe (`--recipe seed`)", "queries (optimistic)"]
    w = [x + 0.01 for x in v]
    assert seed_q == [f"{np.mean(w):.4f} ± {np.std(w, ddof=1):.4f}", "—"]
    assert by["16", "default recipe", "queries (optimistic)"] == ["—", "—"]
    d = [x - 0.1 for x in v]
    assert by["16", "default recipe", "validation split"][0] == (
        f"{np.mean(d):.4f} ± {np.std(d, ddof=1):.4f}"
    )
    assert by["32", "published: reference implementation", "queries (optimistic)"] == [
        "0.5986",
        "0.6035",
    ]
    assert by["32", "published: DCMH (Jiang & Li, CVPR 2017)", "as published"] == [
        "0.4732",
        "0.5378",
    ]
    assert not [k for k in by if k[0] == "16" and k[1].startswith("published")]
    assert compare_recipes.main([str(tmp_path / "nothing")]) == 2


def run_script(*args: str, env=None, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *args], capture_output=True, text=True, env=env or ENV, timeout=timeout
    )


def test_run_all_bits_refuses_bad_seed_flags(tmp_path):
    r = run_script(str(ROOT / "scripts/run_all_bits.sh"), str(tmp_path), "--seeds", "--demo")
    assert r.returncode == 2 and "--seeds needs one or more integer seeds" in r.stderr
    r = run_script(
        str(ROOT / "scripts/run_all_bits.sh"),
        str(tmp_path),
        "--seeds",
        "0",
        "--demo",
        "--seed",
        "3",
    )
    assert r.returncode == 2 and "drop --seed" in r.stderr
    assert not list(tmp_path.iterdir())


def stand_in_python(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose ``python`` logs its arguments and runs a stand-in train.py."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    wrapper = bin_dir / "python"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> {log}\n'
        "if [[ ${1:-} == */train.py ]]; then shift; "
        f'exec {sys.executable} {tmp_path / "fake_train.py"} "$@"; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return {**ENV, "PATH": f"{bin_dir}:{ENV['PATH']}"}, log


def train_calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "train.py" in line]


@pytest.mark.parametrize(
    ("source", "protocol"),
    [(["--demo"], "--query-every 2"), (["--data", "/d"], "--query-every 10"),
     (["--demo", "--query-every", "3"], None)],
)  # fmt: skip
def test_run_all_bits_seeds_measure_both_protocols(tmp_path, source, protocol):
    """--seeds runs also measure the queries (the reference's protocol, reported only) unless a
    --query-every is given, and the table then fills the queries-selected column."""
    env, log = stand_in_python(tmp_path)
    out = tmp_path / "o"
    r = run_script(str(ROOT / "scripts/run_all_bits.sh"), str(out), "--seeds", "0", "1", *source,
                   env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    calls = train_calls(log)
    assert len(calls) == 6
    for c in calls:
        assert c.count("--query-every") == 1
        assert (protocol in c) if protocol else c.endswith("--query-every 3")
    table = (out / "results.md").read_text().split("## Per seed")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "±" in line]
    assert len(rows) == 6 and all(line.count("±") == 3 for line in rows)


def test_reproduce_seed_calls(tmp_path):
    """Both sweeps, 3 code lengths x 3 seeds each, margins 6 / 12 / 24, --recipe seed on one,
    the extra flags passed through, then comparison.md; rerun: every run skipped."""
    env, log = stand_in_python(tmp_path)
    out = tmp_path / "out"
    script = str(ROOT / "scripts/reproduce_seed.sh")
    r = run_script(script, "/data/iapr", str(out), "--device", "cuda", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    calls = train_calls(log)
    assert len(calls) == 18
    for recipe, flag in (("seed-recipe", "--recipe seed"), ("default-recipe", None)):
        mine = [c for c in calls if f"{out}/{recipe}/" in c]
        assert len(mine) == 9
        for c in mine:
            bits, seed = map(int, re.search(r"bits(\d+)/seed(\d+)", c).groups())
            assert f"--bits {bits} --margin {bits * 12 // 32} " in c and f"--seed {seed}" in c
            assert "--data /data/iapr" in c and c.endswith("--device cuda")
            assert "--query-every 10" in c and (flag in c if flag else "--recipe" not in c)
        assert sorted({re.search(r"bits\d+/seed\d+", c).group() for c in mine}) == sorted(
            f"bits{b}/seed{s}" for b in (16, 32, 64) for s in (0, 1, 2)
        )
        assert (out / recipe / "results.md").is_file()
    text = (out / "comparison.md").read_text()
    assert "0.5986" in text and "0.4732" in text and "0.5100 ± 0.0100" in text
    log.unlink()
    r = run_script(script, "/data/iapr", str(out), "--device", "cuda", env=env)
    assert r.returncode == 0 and r.stderr.count("already finished (results.json present)") == 18
    assert train_calls(log) == []


def test_reproduce_seed_demo_passes_demo_and_extra_flags(tmp_path):
    env, log = stand_in_python(tmp_path)
    r = run_script(
        str(ROOT / "scripts/reproduce_seed.sh"),
        "--demo",
        str(tmp_path / "o"),
        "--epochs",
        "2",
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    calls = train_calls(log)
    assert len(calls) == 18
    assert all("--demo" in c and "--data" not in c and c.endswith("--epochs 2") for c in calls)
    assert all("--query-every 2" in c for c in calls)
    r = run_script(str(ROOT / "scripts/reproduce_seed.sh"), "--demo", env=env)
    assert r.returncode == 2 and "usage" in r.stderr


@pytest.mark.slow
def test_run_all_bits_with_seeds_end_to_end(tiny_prepared, tmp_path, tiny_flags):
    """Two seeds at 16 and 64 bits (--bits) on the tiny fixture, one epoch each: run folders
    bits{B}/seed{S}, results.md with ± in every mean cell, results.json with per-seed entries;
    a rerun skips the finished runs and resumes the one whose results.json is gone."""
    flags = [
        f
        for i, f in enumerate(tiny_flags)
        if f not in ("--bits", "--margin") and tiny_flags[i - 1] not in ("--bits", "--margin")
    ]
    out = tmp_path / "sweep"
    cmd = [str(ROOT / "scripts/run_all_bits.sh"), str(out), "--bits", "16", "64", "--seeds", "0", "1"]
    cmd += ["--data", str(tiny_prepared), *flags, "--epochs", "1", "--query-every", "1"]
    r = run_script(*cmd, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (out / "bits32").exists()
    for bits in (16, 64):
        for seed in (0, 1):
            run = out / f"bits{bits}" / f"seed{seed}"
            assert json.loads((run / "args.json").read_text())["seed"] == seed
            results = json.loads((run / "results.json").read_text())
            assert (results["bits"], results["margin"]) == (bits, bits * 12 / 32)
    cells = mean_cells((out / "results.md").read_text())
    assert len(cells) == 2 * 2 * 3 and all(" ± " in c for c in cells), cells
    record = json.loads((out / "results.json").read_text())
    assert [g["bits"] for g in record["code_lengths"]] == [16, 64]
    for g in record["code_lengths"]:
        assert [p["seed"] for p in g["per_seed"]] == [0, 1]
        assert all(isinstance(p["map_i2t"], float) for p in g["per_seed"])
    assert (out / "seed_curves.png").is_file()

    (out / "bits16" / "seed1" / "results.json").unlink()
    r = run_script(*cmd, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("already finished (results.json present)") == 3
    assert f"resuming {out}/bits16/seed1" in r.stderr
    assert (out / "bits16" / "seed1" / "results.json").is_file()


SLOW_TRAIN = """
import json, os, pathlib, sys, time
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--out") + 1])
bits = int(args[args.index("--bits") + 1])
log = pathlib.Path(os.environ["SPAN_LOG"])
with log.open("a") as f:
    f.write(f"start {out} {time.time()}\\n")
with open(os.environ["SPAN_LOG"] + ".threads", "a") as f:  # what the child was given
    f.write(f"{os.environ.get('OMP_NUM_THREADS', '-')} {os.environ.get('MKL_NUM_THREADS', '-')}\\n")
print(f"training {out}")
time.sleep(1.0)
if str(bits) == os.environ.get("FAIL_BITS"):
    sys.exit(3)
out.mkdir(parents=True)
seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
(out / "args.json").write_text(json.dumps({"seed": seed, "bits": bits}))
r = {"bits": bits, "margin": bits * 12 / 32, "best_epoch": 1}
for d in ("i2t", "t2i"):
    r |= {f"map_{d}": 0.5, f"map_{d}_tie_avg": 0.5, f"chance_{d}": 0.2}
(out / "results.json").write_text(json.dumps(r))
with log.open("a") as f:
    f.write(f"end {out} {time.time()}\\n")
"""


def parallel_env(tmp_path: Path, fail_bits: str = "") -> tuple[dict, Path]:
    env, _ = stand_in_python(tmp_path)
    (tmp_path / "fake_train.py").write_text(SLOW_TRAIN)  # the stand-in python runs this one
    spans = tmp_path / "spans.log"
    return {**env, "SPAN_LOG": str(spans), "FAIL_BITS": fail_bits}, spans


def max_overlap(spans: Path) -> int:
    events = sorted(
        (float(t), 1 if kind == "start" else -1)
        for kind, _, t in (line.split() for line in spans.read_text().splitlines())
    )
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def test_parallel_runs_at_most_n_at_once_with_their_own_logs(tmp_path):
    env, spans = parallel_env(tmp_path)
    out = tmp_path / "o"
    r = run_script(str(ROOT / "scripts/run_all_bits.sh"), str(out), "--seeds", "0", "1",
                   "--parallel", "3", "--data", "/d", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert max_overlap(spans) == 3  # 6 runs of 1 s, 3 at a time
    for bits in (16, 32, 64):
        for seed in (0, 1):
            run = out / f"bits{bits}" / f"seed{seed}"
            assert (run / "results.json").is_file()
            assert f"training {run}" in Path(f"{run}.console.log").read_text()
    assert (out / "results.md").is_file()
    spans.unlink()
    r = run_script(str(ROOT / "scripts/run_all_bits.sh"), str(tmp_path / "o2"), "--data", "/d",
                   env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert max_overlap(spans) == 1  # default: one after the other


def test_parallel_children_get_their_share_of_the_cores(tmp_path):
    """--parallel N: nproc / N threads per child (at least 1) in OMP_NUM_THREADS and
    MKL_NUM_THREADS; a user's OMP_NUM_THREADS is kept; one at a time leaves them unset."""
    env, spans = parallel_env(tmp_path)
    env = {k: v for k, v in env.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    threads = Path(f"{spans}.threads")
    cores = len(os.sched_getaffinity(0))
    for parallel, given, expected in (("2", None, max(1, cores // 2)), ("4", None, max(1, cores // 4)),
                                      ("2", "3", 3), ("1", None, "-")):  # fmt: skip
        threads.unlink(missing_ok=True)
        run_env = env if given is None else {**env, "OMP_NUM_THREADS": given}
        r = run_script(str(ROOT / "scripts/run_all_bits.sh"), str(tmp_path / f"o{parallel}{given}"),
                       "--bits", "16", "64", "--parallel", parallel, "--data", "/d", env=run_env)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        seen = threads.read_text().split("\n")[:-1]
        mkl = expected if given is None else "-"
        assert seen == [f"{expected} {mkl}"] * 2, (parallel, given, seen)
        told = f"--parallel {parallel}: {expected} CPU thread(s) per training"
        assert (told in r.stderr) == (given is None and parallel != "1")


def test_parallel_names_the_failed_runs(tmp_path):
    env, _ = parallel_env(tmp_path, fail_bits="32")
    out = tmp_path / "o"
    r = run_script(str(ROOT / "scripts/run_all_bits.sh"), str(out), "--parallel", "2",
                   "--data", "/d", env=env)  # fmt: skip
    assert r.returncode == 1
    assert f"error: {out}/bits32 failed (exit status 3); see {out}/bits32.console.log" in r.stderr
    assert (out / "bits16" / "results.json").is_file() and (
        out / "bits64" / "results.json"
    ).is_file()
    r = run_script(str(ROOT / "scripts/run_all_bits.sh"), str(out), "--parallel", "0", env=env)
    assert r.returncode == 2 and "--parallel needs a number of runs >= 1" in r.stderr
