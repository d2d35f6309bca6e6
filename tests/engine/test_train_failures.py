"""train.py under faults: a full disk while checkpointing, absurd learning rates, a crash on either
side of a checkpoint write, a damaged or missing checkpoint at --resume, a moved run folder."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_FLAGS

import train
from cmh.runs import checkpoints as checkpoint
from cmh.runs.checkpoints import load_checkpoint


def run(prepared: Path, out: Path, *extra: str) -> tuple[int, str]:
    """train.main on `prepared` with the tiny flags; (exit code, what it printed to stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main(["--data", str(prepared), "--out", str(out), *TINY_FLAGS, *extra])
    return code, err.getvalue()


def resume(out: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main(["--out", str(out), "--resume", *extra])
    return code, err.getvalue()


def epochs_logged(out: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]


# =========================================================================== full disk
@pytest.fixture(scope="module")
def disk_full_run(tiny_prepared, tmp_path_factory):
    """A 2-epoch run whose first checkpoint write of epoch 2 fails with ENOSPC after 1 KB."""
    out = tmp_path_factory.mktemp("disk-full")
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            f.write(b"\0" * 1024)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint.torch, "save", save)
        code, err = run(tiny_prepared, out, "--epochs", "2")
    return code, err, out


@pytest.mark.slow
def test_disk_full_during_training_keeps_last_checkpoint(disk_full_run):
    code, err, out = disk_full_run
    assert code == 2
    assert f"error: could not write checkpoint {out}" in err and "No space left on device" in err
    assert "the previous checkpoint, if any, is intact. Free disk space" in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    assert list(out.glob(".*.tmp-*")) == []
    assert epochs_logged(out) in ([1], [1, 2])  # epoch 2's line may precede its failed last.pt


@pytest.mark.slow
def test_train_log_counts_truncated_captions(disk_full_run):
    _, _, out = disk_full_run
    assert "captions truncated to --max-length 24 tokens" in (out / "train.log").read_text()


@pytest.mark.slow
def test_resume_refuses_a_corrupted_checkpoint(disk_full_run, tmp_path):
    _, _, source = disk_full_run
    out = tmp_path / "run"
    out.mkdir()
    args = json.loads((source / "args.json").read_text())
    (out / "args.json").write_text(json.dumps({**args, "out": str(out)}))
    raw = bytearray((source / "last.pt").read_bytes())
    raw[len(raw) // 2] ^= 0x10
    (out / "last.pt").write_bytes(bytes(raw))
    code, err = resume(out)
    assert code == 2
    assert f"checkpoint {out / 'last.pt'} is corrupted" in err and "CRC-32" in err


@pytest.mark.slow
def test_moved_run_folder_resumes_in_place(disk_full_run, tmp_path):
    source, out = tmp_path / "old", tmp_path / "moved"  # a copy: the fixture's run stays as is
    shutil.copytree(disk_full_run[2], source)
    args = json.loads((source / "args.json").read_text())
    (source / "args.json").write_text(json.dumps({**args, "out": str(source)}))
    shutil.copytree(source, out)
    before = (source / "last.pt").stat().st_mtime_ns
    code, err = resume(out)
    assert code == 0, err
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert (source / "last.pt").stat().st_mtime_ns == before  # the old folder is left alone


# =========================================================================== learning rates
@pytest.mark.slow
def test_learning_rate_1e3_completes_or_stops_cleanly(tiny_prepared, tmp_path):
    """Measured: the codes are tanh outputs, so the loss stays bounded and finite; the run
    completes with collapsed codes. If it ever went non-finite it must stop naming the batch."""
    code, err = run(tiny_prepared, tmp_path, "--lr", "1e3", "--epochs", "1")
    log = (tmp_path / "train.log").read_text()
    if code == 0:
        state = load_checkpoint(tmp_path / "last.pt")
        assert all(
            torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
        )
        results = json.loads((tmp_path / "results.json").read_text())
        assert all(math.isfinite(results[k]) for k in ("map_i2t", "map_t2i"))  # a clean finish
        assert math.isfinite(json.loads((tmp_path / "metrics.jsonl").read_text())["loss"])
    else:
        assert code == 1, err
        assert "non-finite loss" in log and "batch item ids" in log


@pytest.fixture(scope="module")
def overflow_run(tiny_prepared, tmp_path_factory):
    """--lr 1e30: Adam's first step moves every weight by ~1e30; the next forward pass overflows
    float32 (batch-norm and layer-norm variances) and the loss is NaN. No monkeypatching."""
    out = tmp_path_factory.mktemp("overflow")
    code, err = run(tiny_prepared, out, "--lr", "1e30", "--epochs", "2")
    return code, err, out


@pytest.mark.slow
def test_overflowing_weights_stop_the_run_naming_the_batch(overflow_run):
    code, _, out = overflow_run
    assert code == 1
    log = (out / "train.log").read_text()
    assert "non-finite loss (nan) at epoch 1, step 1, batch item ids [" in log
    assert not (out / "last.pt").exists()  # nothing good was reached, nothing was written


@pytest.mark.slow
def test_non_finite_loss_in_epoch_2_keeps_epoch_1_checkpoint(disk_full_run, tmp_path):
    """The run of disk_full_run (last.pt of epoch 1), resumed with its optimizer's learning rate
    raised to 1e30 inside the checkpoint: epoch 2 goes NaN, last.pt stays epoch 1's, byte for byte."""
    _, _, source = disk_full_run
    out = tmp_path / "run"
    out.mkdir()
    args = json.loads((source / "args.json").read_text())
    (out / "args.json").write_text(json.dumps({**args, "out": str(out)}))
    state = load_checkpoint(source / "last.pt")
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = 1e30
    checkpoint.save_checkpoint(state, out / "last.pt")
    before = (out / "last.pt").read_bytes()
    code, _ = resume(out)
    assert code == 1
    log = (out / "train.log").read_text()
    assert "non-finite loss (nan) at epoch 2, step 1, batch item ids [" in log
    assert f"The last good checkpoint is {out / 'last.pt'}" in log
    assert (out / "last.pt").read_bytes() == before
    assert not (out / "metrics.jsonl").exists()  # no epoch 2 line


@pytest.mark.slow
def test_learning_rate_beyond_float32_stops_naming_the_batch(tiny_prepared, tmp_path):
    code, err = run(tiny_prepared, tmp_path, "--lr", "1e39", "--epochs", "1")
    assert code == 1, err
    log = (tmp_path / "train.log").read_text()
    assert "at epoch 1, step 0, batch item ids [" in log and "--lr" in log


@pytest.mark.slow
def test_non_finite_stop_before_any_checkpoint_says_so(overflow_run):
    _, _, out = overflow_run
    log = (out / "train.log").read_text()
    assert "no checkpoint was written" in log and "last good checkpoint" not in log


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--lr", "inf"], "--lr"),
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--optimizer", "separate", "--image-lr", "-1", "--text-lr", "1e-3"], "--image-lr"),
    ],
    ids=["lr inf", "negative weight decay", "negative image lr"],
)
def test_impossible_optimizer_settings_refused(tiny_prepared, tmp_path, extra, flag):
    code, err = run(tiny_prepared, tmp_path, *extra, "--epochs", "1")
    assert code == 2 and err.startswith(f"error: {flag} must be"), err
    assert not (tmp_path / "last.pt").exists()


# =========================================================================== crash around a write
class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in train.py handles it."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "when",
    [
        "before last.pt is replaced",
        "after last.pt is replaced",
    ],
)
def test_crash_next_to_a_checkpoint_write_keeps_metrics_whole(
    tiny_prepared, tmp_path, monkeypatch, when
):
    real_replace, seen = os.replace, []

    def dying_replace(src, dst):
        if Path(dst).name == "last.pt":
            seen.append(dst)
            if len(seen) == 2 and when.startswith("before"):
                raise Killed
        real_replace(src, dst)
        if len(seen) == 2 and when.startswith("after"):
            raise Killed

    monkeypatch.setattr(checkpoint.os, "replace", dying_replace)
    with pytest.raises(Killed):
        run(tiny_prepared, tmp_path, "--epochs", "2", "--eval-every", "2")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == (1 if when.startswith("before") else 2)
    code, err = resume(tmp_path)
    assert code == 0, err
    assert epochs_logged(tmp_path) == [1, 2]


# =========================================================================== --resume
def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    code, err = resume(tmp_path / "nowhere")
    assert code == 2 and "--resume" in err and str(tmp_path / "nowhere") in err


@pytest.mark.parametrize("has_args", [False, True], ids=["killed at startup", "killed in epoch 1"])
def test_resume_before_the_first_checkpoint_says_start_again(tiny_prepared, tmp_path, has_args):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train.log").write_text("")
    if has_args:
        argv = ["--data", str(tiny_prepared), "--out", str(out), *TINY_FLAGS]
        args = train.parse_args(argv)
        (out / "args.json").write_text(json.dumps(vars(args)))
    code, err = resume(out)
    assert code == 2
    assert "no checkpoint" in err and "without --resume" in err and str(out) in err, err
