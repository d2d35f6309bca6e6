"""One writer per folder and clean stops, with the real entry points: two trainings on one --out,
prepare and index next to a holder, Ctrl-C / SIGTERM mid-training then --resume, --resume of a
finished run, a refused start that leaves no folder, --overwrite next to a file of the user's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import COMPARE_FLAGS
from learning import assert_diverse
from lock_holder import hold

import data
import retrieve
import train
from cmh.utils.folder_lock import LOCK_NAME

ROOT = Path(__file__).resolve().parents[2]


def start_training(out: Path, prepared: Path, flags: list[str], *extra: str) -> subprocess.Popen:
    argv = [sys.executable, str(ROOT / "train.py"), "--data", str(prepared), "--out", str(out),
            *flags, "--no-progress", *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def epochs_logged(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    return [json.loads(x)["epoch"] for x in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.slow
def test_two_trainings_started_together_one_runs(tiny_prepared, tmp_path, tiny_flags):
    out = tmp_path / "run"
    both = [start_training(out, tiny_prepared, tiny_flags, "--epochs", "2") for _ in range(2)]
    done = [(p, *p.communicate(timeout=600)) for p in both]
    codes = sorted(p.returncode for p, _, _ in done)
    assert codes == [0, 2], [err[-2000:] for _, _, err in done]
    winner = next(p for p, _, _ in done if p.returncode == 0)
    refused = next(err for p, _, err in done if p.returncode == 2)
    assert (
        f"error: {out} is in use: a training run is writing there (pid {winner.pid} on" in refused
    )
    assert epochs_logged(out) == [1, 2]  # each epoch once, by one process


def test_a_held_run_folder_is_refused_within_a_second(tiny_prepared, tmp_path, tiny_flags, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags]
    train.parse_args(argv)  # the imports a process does before any check (timm's: ~2 s), not timed
    holder = hold(out / LOCK_NAME)
    try:
        t0 = time.perf_counter()
        code = train.main(argv)
        assert code == 2 and time.perf_counter() - t0 < 1
        assert f"(pid {holder.pid} on " in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_held_prepare_folder_is_refused(tiny_prepared, tmp_path, capsys):
    demo = tiny_prepared.parent
    out = tmp_path / "prepared"
    holder = hold(out / LOCK_NAME)
    argv = ["prepare", "--iapr-root", str(demo / "iaprtc12"), "--saiapr-root",
            str(demo / "saiapr_tc-12"), "--out", str(out), "--n-query", "12", "--n-train", "60",
            "--n-val", "12"]  # fmt: skip
    try:
        t0 = time.perf_counter()
        assert data.main(argv) == 2 and time.perf_counter() - t0 < 1
        err = capsys.readouterr().err
        assert f"{out} is in use: a prepare is writing there (pid {holder.pid} on " in err
    finally:
        holder.kill()
        holder.wait()
    assert data.main(argv) == 0  # the holder gone, its lock is nothing
    assert (out / "summary.json").is_file()


def test_a_held_index_folder_is_refused(learned_run, tmp_path, capsys):
    out = tmp_path / "index"
    holder = hold(out / LOCK_NAME)
    argv = ["index", "--checkpoint", str(learned_run / "best.pt"), "--out", str(out)]
    try:
        assert retrieve.main(argv) == 2
        err = capsys.readouterr().err
        assert f"{out} is in use: an index build is writing there (pid {holder.pid} on " in err
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "meta.json").exists()


def test_overwrite_replaces_only_the_index_files(learned_run, tmp_path, capsys):
    out = tmp_path / "index"
    argv = ["index", "--checkpoint", str(learned_run / "best.pt"), "--out", str(out)]
    assert retrieve.main(argv) == 0
    assert f"--html {tmp_path / 'results.html'}" in capsys.readouterr().out  # beside, not inside
    assert retrieve.main(argv) == 2
    assert "already holds an index; pass --overwrite" in capsys.readouterr().err
    (out / "results.html").write_text("<p>mine</p>")
    assert retrieve.main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} holds what an index does not: results.html" in err
    assert (out / "results.html").read_text() == "<p>mine</p>" and (out / "meta.json").is_file()
    (out / "results.html").unlink()
    before = json.loads((out / "meta.json").read_text())
    assert retrieve.main([*argv, "--overwrite", "--kind", "hnsw"]) == 0
    after = json.loads((out / "meta.json").read_text())
    assert (before["kind"], after["kind"]) == ("flat", "hnsw")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "codes.2.npz", "image.2.faiss", "items.2.json", "meta.json", "text.2.faiss"]  # fmt: skip


def test_a_refused_start_leaves_no_run_folder(tiny_prepared, tmp_path, tiny_flags, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_prepared, broken)
    manifest = broken / "manifest.jsonl"
    manifest.write_text(manifest.read_text().replace("{", "[", 1))
    out = tmp_path / "runs" / "r"
    assert train.main(["--data", str(broken), "--out", str(out), *tiny_flags]) == 2
    assert "manifest.jsonl" in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_before_training_leaves_nothing(tiny_prepared, tmp_path, tiny_flags, monkeypatch,
                                               capsys):  # fmt: skip
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "prepare_run", interrupted)
    out = tmp_path / "run"
    assert train.main(["--data", str(tiny_prepared), "--out", str(out), *tiny_flags]) == 130
    said = capsys.readouterr().err.strip()
    assert said == (
        "interrupted (SIGINT) before the first epoch ended: no checkpoint was written; "
        "run the same command again to start over"
    )
    assert not out.exists()


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert train.main(["--data", str(tiny_prepared), "--out", str(out), *COMPARE_FLAGS,
                       "--epochs", "4", "--no-progress"]) == 0  # fmt: skip
    assert_diverse(out)  # the weights compared below make codes of their own, not constants
    return out


@pytest.mark.compares
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_training_stops_cleanly_and_resume_finishes_it(
    sig, uninterrupted, tiny_prepared, tmp_path, compare_flags
):
    out = tmp_path / "run"
    child = start_training(out, tiny_prepared, compare_flags, "--epochs", "4")
    deadline = time.time() + 300
    while not epochs_logged(out) and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(sig)  # epoch 2 is training
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 128 + sig, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stdout.strip().splitlines()[-1]
    held = epochs_logged(out)[-1]
    assert held < 4 and f"interrupted ({signal.Signals(sig).name}); " in last
    assert f"{out / 'last.pt'} holds epoch {held}. Go on with: " in last
    resume = last.split("Go on with: ")[1]
    assert resume == f"python train.py --resume --out {out}"
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # nothing half-written
    assert train.main(resume.split()[2:]) == 0
    assert epochs_logged(out) == [1, 2, 3, 4]
    ours, theirs = _weights(out / "last.pt"), _weights(uninterrupted / "last.pt")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # the uninterrupted weights


def test_resume_of_a_finished_run_says_so(uninterrupted, capsys):
    results = uninterrupted / "results.json"
    before = (results.stat().st_mtime_ns, results.read_text())
    assert train.main(["--resume", "--out", str(uninterrupted)]) == 0
    said = capsys.readouterr().out
    assert f"{uninterrupted} is finished: it trained its 4 epochs" in said
    assert f"python evaluate.py --checkpoint {uninterrupted / 'best.pt'}" in said
    assert "--resume --epochs N (N > 4)" in said
    assert (results.stat().st_mtime_ns, results.read_text()) == before  # nothing redone
    assert os.listdir(uninterrupted).count("results.json") == 1


@pytest.mark.slow
def test_three_frozen_runs_started_together_extract_the_features_once(
    tiny_prepared, tmp_path, tiny_flags
):
    """The feature cache is shared on purpose: one run extracts, the two others wait for it and
    read it (as run_all_bits.sh --parallel 3 --freeze-backbones does with pretrained towers; the
    random towers here are the same only for the same bits, so the three sweep the margin)."""
    cache = tmp_path / "features"
    runs = [
        start_training(tmp_path / f"margin{m}", tiny_prepared, tiny_flags, "--margin", str(m),
                       "--freeze-backbones", "--feature-cache", str(cache), "--epochs", "1")
        for m in (4, 6, 8)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in runs]
    assert [p.returncode for p in runs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    said = "".join(out for out, _ in outputs)
    assert said.count("frozen features: extracting once into") == 1
    assert said.count("frozen features: using the cache") == 2
    assert len(list(cache.glob("features-*.pt"))) == 1
