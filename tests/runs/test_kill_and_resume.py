"""Kill train.py (SIGKILL) at several points, resume, and end with an uninterrupted run's weights.

One run is killed again and again, each time resumed with `--resume` (or started afresh when it
was killed before its first checkpoint): as soon as its run folder appears (before args.json and
any checkpoint), just after epoch 1's checkpoint, in the middle of writing epoch 2's (the
temporary file exists, last.pt is still epoch 1's), then up to twice at a moment of the training
loop drawn from a seeded RNG (a delay after the resumed run logs "resumed from", scaled by the
epoch time of the reference run, so it lands inside training on a slow or a fast machine). After
every kill each checkpoint on disk must load; at the end last.pt must hold exactly the weights of
an uninterrupted run (CPU, same seed, two loader workers), results.json the same numbers, and no temporary file may
remain. About 90 s on 2 cores.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import COMPARE_FLAGS
from learning import assert_diverse

import train
from cmh.runs.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 3
# two persistent loader workers: their augmentation must not restart on resume
FLAGS = [*COMPARE_FLAGS, "--epochs", str(EPOCHS), "--eval-every", str(EPOCHS), "--device", "cpu",
         "--num-workers", "2"]  # fmt: skip
POLL_S = 0.001


def launch(prepared: Path, out: Path, resume: bool, log: Path) -> subprocess.Popen:
    """`python train.py` in a child process (output to `log`, appended)."""
    argv = ["--out", str(out), "--resume"] if resume else ["--data", str(prepared), "--out", str(out), *FLAGS]  # fmt: skip
    with open(log, "ab") as sink:
        return subprocess.Popen(
            [sys.executable, "train.py", *argv], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT
        )


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def wait_for(proc: subprocess.Popen, condition, timeout: float = 300.0) -> bool:
    """Poll until `condition()` holds (True) or `proc` exits (False)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_S)
    assert proc.poll() is not None, "the training process hung"
    return False


def kill_when(proc: subprocess.Popen, condition) -> bool:
    """SIGKILL `proc` as soon as `condition()` holds; False if it exited first."""
    if wait_for(proc, condition):
        kill(proc)
        return True
    return False


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL `proc` after `seconds`; False if it exited first."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        kill(proc)
        return True


def temporaries(out: Path) -> list[Path]:
    return sorted(out.glob(".*.tmp-*"))


def check_on_disk(out: Path, last_epochs: list[int]) -> None:
    """Every checkpoint present loads; last.pt's epoch never goes back."""
    for name in ("last.pt", "best.pt"):
        if (out / name).exists():
            state = load_checkpoint(out / name)  # UserError if torn or damaged
            if name == "last.pt":
                assert not last_epochs or state["epoch"] >= last_epochs[-1]
                last_epochs.append(state["epoch"])


def resume_or_restart(prepared: Path, out: Path, log: Path, capsys) -> subprocess.Popen:
    """--resume when a checkpoint exists; otherwise --resume must refuse (exit 2, naming what is
    missing) and the run is started afresh with the same flags."""
    if (out / "last.pt").exists():
        return launch(prepared, out, resume=True, log=log)
    assert train.main(["--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and ("last.pt" in err or "args.json" in err), err
    return launch(prepared, out, resume=False, log=log)


def times_resumed(out: Path) -> int:
    log = out / "train.log"
    return log.read_text().count("resumed from") if log.exists() else 0


@pytest.mark.compares
@pytest.mark.slow
def test_kill_at_any_moment_then_resume(tiny_prepared, tmp_path, capsys):
    ref, out, log = tmp_path / "ref", tmp_path / "run", tmp_path / "children.log"
    assert launch(tiny_prepared, ref, resume=False, log=log).wait(timeout=600) == 0
    assert_diverse(ref)  # the weights and results compared below are not those of constants
    records = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    epoch_s = sum(r["seconds"] for r in records) / len(records)  # this machine, now
    rng = random.Random(8)
    kills, last_epochs = [], []

    # 1. as soon as the run folder exists: no args.json, no checkpoint yet
    proc = launch(tiny_prepared, out, resume=False, log=log)
    assert kill_when(proc, lambda: (out / "train.log").exists())
    kills.append("startup")
    assert not (out / "last.pt").exists()
    # 2. just after epoch 1's checkpoint, then in the middle of writing epoch 2's
    proc = resume_or_restart(tiny_prepared, out, log, capsys)
    assert kill_when(proc, lambda: (out / "last.pt").exists())
    kills.append("after a checkpoint write")
    check_on_disk(out, last_epochs)
    proc = launch(tiny_prepared, out, resume=True, log=log)
    assert kill_when(proc, lambda: bool(list(out.glob(".last.pt.tmp-*"))))
    kills.append("during a checkpoint write")
    assert list(out.glob(".last.pt.tmp-*")), "killed while the temporary file existed"
    check_on_disk(out, last_epochs)
    assert last_epochs[-1] == 1  # the interrupted write left the previous checkpoint in place
    # 3. at random moments of the training loop: a seeded delay after the resumed run says
    # "resumed from", within the time its remaining epochs took in the reference run
    proc = None
    for _ in range(2):
        remaining = EPOCHS - last_epochs[-1]
        if remaining == 0:
            break
        resumed = times_resumed(out)
        proc = launch(tiny_prepared, out, resume=True, log=log)
        assert wait_for(proc, lambda n=resumed: times_resumed(out) > n)
        delay = rng.uniform(0.05, 0.8) * remaining * epoch_s
        if not kill_after(proc, delay):
            break
        proc = None
        kills.append(f"{delay:.1f} s into epochs {last_epochs[-1] + 1}..{EPOCHS}")
        check_on_disk(out, last_epochs)
    if proc is None:
        proc = resume_or_restart(tiny_prepared, out, log, capsys)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert len(kills) >= 4, kills

    a, b = (load_checkpoint(d / "last.pt") for d in (ref, out))
    assert b["epoch"] == EPOCHS
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (ref, out))
    assert ra == rb
    assert temporaries(out) == [], "a killed write's temporary file was left behind"
