"""A benchmark script's runs: trained afresh, resumed after a kill, or reused when their recorded
arguments are the ones asked for (never a run made with other arguments), with the wall time of
all attempts together. scripts/real_captions.py and scripts/real_twemoji.py run through this."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from cmh.config import train_flags
from cmh.runs.run_folder import NOT_RECORDED, argument_differences
from cmh.utils.atomic_io import write_text_atomic
from cmh.utils.entry_points import run_entry_point
from cmh.utils.errors import UserError

# Where things are and how a run was started, not what it computes: not compared.
NOT_COMPARED = ("data", "out", "feature_cache", "demo_dir", "given", "resume", "config", "amp_requested")


def differing_argument(recorded: dict, current: dict) -> str | None:
    """The first of `current` (train.py's parsed arguments) whose value in `recorded` (a run's
    args.json) differs, as "--flag: recorded X, now Y"; None when all agree. The recorded `amp`
    is what ran, so the request (`amp_requested`) is compared where there is one."""
    for key, now, then in argument_differences(current, recorded, set(current) - set(NOT_COMPARED)):
        flag = "--" + key.replace("_", "-")
        if then is NOT_RECORDED:
            return f"{flag}: not recorded, now {now!r}"
        return f"{flag}: recorded {then!r}, now {now!r}"
    return None


def run_decision(out: Path, argv: list[str]) -> str:
    """What to do with the run folder `out` for `python train.py ARGV`: "fresh" (no checkpoint or
    results there), "resume" (an interrupted run made with these arguments) or "reuse" (its
    results.json was made with these arguments). A run made with other arguments, or whose
    arguments are unknown, is refused (UserError naming the first argument that differs)."""
    if not ((out / "results.json").is_file() or (out / "last.pt").is_file()):
        return "fresh"
    if not (out / "args.json").is_file():
        raise UserError(
            f"{out} holds a run without args.json, so its arguments are unknown; delete "
            "that folder to run it again, or pass another --out"
        )
    recorded = json.loads((out / "args.json").read_text())
    differs = differing_argument(recorded, vars(train_flags.parse_args(argv)))
    if differs:
        raise UserError(
            f"{out} holds a run made with other arguments ({differs}); delete that folder to "
            "run it again with the current ones, or pass another --out"
        )
    return "reuse" if (out / "results.json").is_file() else "resume"


# The attempts at a run, [{"start": t, "end": t}, ...] in seconds since the epoch (time.time()).
WALL_TIME = "wall_time.json"


def begin_attempt(out: Path, fresh: bool) -> None:
    """Note the start of an attempt at the run in `out`. A fresh run forgets earlier attempts; a
    resumed one first ends the attempt that was killed at the time of the newest file it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / WALL_TIME
    attempts = [] if fresh or not path.is_file() else json.loads(path.read_text())
    if attempts and "end" not in attempts[-1]:
        written = [p.stat().st_mtime for p in out.iterdir() if p.is_file() and p.name != WALL_TIME]
        attempts[-1]["end"] = max([attempts[-1]["start"], *written])
    write_text_atomic(path, json.dumps([*attempts, {"start": time.time()}]) + "\n")


def end_attempt(out: Path) -> float:
    """End the current attempt; write and return the run's wall time, all attempts together."""
    attempts = json.loads((out / WALL_TIME).read_text())
    attempts[-1]["end"] = time.time()
    write_text_atomic(out / WALL_TIME, json.dumps(attempts) + "\n")
    seconds = sum(a["end"] - a["start"] for a in attempts)
    write_text_atomic(out / "wall_seconds.txt", f"{seconds:.1f}\n")
    return seconds


def train_argv(prepared: Path, out: Path, flags: list[str]) -> list[str]:
    return ["--data", str(prepared), "--out", str(out), *flags]


def train_or_reuse(argv: list[str], out: Path) -> dict:
    """Train (or resume, or reuse: see `run_decision`) `python train.py ARGV` (whose --out is
    `out`) and return its results.json."""
    decision = run_decision(out, argv)
    if decision != "reuse":
        begin_attempt(out, fresh=decision == "fresh")
        run_argv = ["--out", str(out), "--resume"] if decision == "resume" else argv
        if run_entry_point("train", run_argv) != 0:
            raise SystemExit(f"error: python train.py {shlex.join(run_argv)} failed")
        end_attempt(out)
    return json.loads((out / "results.json").read_text())
