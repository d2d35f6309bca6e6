"""The run folder's files: logging to train.log, metrics.jsonl, and the saved arguments.

A run folder (``--out``) holds ``args.json`` (every argument), ``train.log``, ``metrics.jsonl``
(one line per epoch, written before ``last.pt`` so a crash never loses a line the checkpoint
has), ``last.pt`` / ``best.pt`` (:mod:`cmh.runs.checkpoints`) and the final ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from cmh.utils.atomic_io import write_text_atomic
from cmh.utils.errors import UserError

log = logging.getLogger("train")


def check_new_run(out: Path, resume: bool) -> None:
    """A fresh start must not overwrite a run: refuse an ``out`` that holds last.pt."""
    if not resume and (out / "last.pt").exists():
        done = (out / "results.json").is_file()
        raise UserError(
            f"{out} already holds a run (last.pt); pass --resume to continue it "
            f"{'(it finished: --resume --epochs N trains it further) ' if done else ''}"
            f"or choose another --out (or delete {out})"
        )


def last_epoch(out: Path) -> int | None:
    """The epoch ``out/last.pt`` holds; None before the first checkpoint."""
    if not (out / "last.pt").is_file():
        return None
    return int(torch.load(out / "last.pt", map_location="cpu", weights_only=True)["epoch"])


def interrupted_message(out: Path, signal_name: str) -> str:
    """The last words of a run stopped by a signal: which epoch its checkpoint holds and the
    exact command that goes on from there."""
    epoch = last_epoch(out)
    if epoch is None:
        return (
            f"interrupted ({signal_name}) before the first epoch ended: no checkpoint was "
            "written; run the same command again to start over"
        )
    return (
        f"interrupted ({signal_name}); {out / 'last.pt'} holds epoch {epoch}. "
        f"Go on with: python train.py --resume --out {out}"
    )


def finished_run(args) -> str | None:
    """For --resume of a run that has trained its --epochs and written results.json: what to
    do instead (None when there is training left)."""
    out = Path(args.out)
    try:
        done = json.loads((out / "results.json").read_text())["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no final results (or from a version that did not record its epochs)
    if args.epochs > done:
        return None
    return (
        f"{out} is finished: it trained its {done} epochs and holds its results "
        f"({out / 'results.json'}). Evaluate it with python evaluate.py --checkpoint "
        f"{out / 'best.pt'}, or train on with --resume --epochs N (N > {done})"
    )


def write_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def trim_metrics(path: Path, epoch: int) -> None:
    """Keep the metrics.jsonl lines of epochs <= `epoch` (the resumed checkpoint's): a line written
    just before a crash that lost its checkpoint is dropped (that epoch is trained again), and so
    is a line torn by a kill."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] <= epoch:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    write_text_atomic(path, "".join(x + "\n" for x in kept))


def setup_logging(out: Path | None) -> None:
    """Console (and, on rank 0, RUN/train.log) logging of the "train" logger."""
    log.setLevel(logging.INFO if out is not None else logging.WARNING)
    log.handlers.clear()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if out is not None:
        handlers.append(logging.FileHandler(out / "train.log"))
    data_log = logging.getLogger("data")  # e.g. how many captions --max-length cut
    data_log.setLevel(log.level)
    data_log.handlers.clear()
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        data_log.addHandler(handler)


def record_failure(out: Path, message: str) -> None:
    """Write ``message`` to ``out/train.log`` when this process logs there (it got past
    :func:`setup_logging`), so a run that failed after its folder was made says why in its own
    log, not only on the console. An earlier run's log (a refused start) is left alone."""
    target = os.path.abspath(out / "train.log")
    for handler in logging.getLogger("train").handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
            handler.emit(logging.makeLogRecord({"msg": message, "levelno": logging.ERROR}))


# The flags a resume may change: how long it trains, how often it validates, and where and with
# how many loader workers it runs (the weights do not depend on the worker count; tested), and
# whether it draws progress bars or measures the queries (--query-every: reported only, it never
# touches the weights; tested).
RESUME_OVERRIDES = ("epochs", "eval_every", "device", "num_workers", "progress", "query_every")
# Not compared on resume: where the run is now (a moved folder resumes in place) and the switch.
RESUME_NOT_COMPARED = ("out", "resume")
# Saved resolved (``str(Path(...))``): compared as the folders they name.
RESUME_PATHS = ("data", "demo_dir", "feature_cache")


def resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """--resume continues with the run's saved arguments; RESUME_OVERRIDES given on the command
    line (e.g. more --epochs, another --device) replace them. Any other flag given must equal the
    saved value (UserError naming each that differs). ``given`` stays the first start's."""
    out = Path(args.out)
    if not out.is_dir():
        raise UserError(f"--resume: {out} does not exist; is --out the folder of an earlier run?")
    if not (out / "last.pt").is_file():
        raise UserError(
            f"--resume: {out} holds no checkpoint (last.pt) yet: the run stopped before its "
            "first epoch ended. Start it again without --resume, with the same flags"
        )
    if not (out / "args.json").is_file():
        raise UserError(f"--resume: {out / 'args.json'} does not exist; is --out a run folder?")
    saved = json.loads((out / "args.json").read_text())
    differing = resume_conflicts(args, saved, out / "args.json")
    if differing:
        may_change = ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES)
        raise UserError(
            f"--resume: {'; '.join(differing)}; only {may_change} may change on resume "
            "(start a new run in another --out to train with other settings)"
        )
    for key in RESUME_OVERRIDES:
        if key in args.given:
            saved[key] = args.get(key)
    saved["out"] = args.out  # where the run is now, even if it was moved since
    if saved.get("demo"):  # `data` was saved as the demo's folder, which --demo-dir names again
        saved["data"] = None
    # a flag the saved run predates takes today's value (its default, or an override given)
    merged = {**args.to_dict(), **saved, "resume": True, "given": saved.get("given", [])}
    return type(args).from_dict(merged)


def resume_conflicts(args, saved: dict, where: Path) -> list[str]:
    """For each flag in ``args.given`` (but RESUME_OVERRIDES) whose value is not the run's
    ``saved`` one as the user would have typed it, "--bits 64 differs from the run's 16 (WHERE)"."""
    keys = set(args.given) - set(RESUME_OVERRIDES) - set(RESUME_NOT_COMPARED)
    differing = []
    for key, value, recorded in argument_differences(args.to_dict(), saved, keys):
        shown = _as_typed(key, value)
        if recorded is NOT_RECORDED:
            differing.append(f"{shown} is not recorded in the run's {where}")
        else:
            differing.append(f"{shown} differs from the run's {recorded} ({where})")
    return differing


NOT_RECORDED = object()


def argument_differences(current: dict, saved: dict, keys) -> list[tuple[str, object, object]]:
    """(key, current value, saved value or NOT_RECORDED) for each of ``keys`` whose value differs
    from a run's saved arguments (args.json): the one comparison --resume and the benchmark
    scripts' reuse make. The saved `amp` is what ran, so the request (`amp_requested`) is
    compared where there is one; paths are compared as the folders they name."""
    asked = saved.get("amp_requested")
    typed = {**saved, "amp": saved.get("amp") if asked is None else asked}
    return [
        (key, current[key], typed.get(key, NOT_RECORDED))
        for key in sorted(keys)
        if key not in typed or not _same(key, current[key], typed[key])
    ]


def _as_typed(key: str, value) -> str:
    """The flag as typed: "--bits 64", "--amp", "--no-amp"."""
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def _same(key: str, value, saved) -> bool:
    if key in RESUME_PATHS and value is not None and saved is not None:
        return Path(value).resolve() == Path(saved).resolve()
    return value == saved


def resolve_amp(args: argparse.Namespace, device: torch.device, is_main: bool) -> None:
    """--amp is bf16 autocast on CUDA only. Elsewhere the run is float32, logged once (rank 0) and
    kept in args.json: `amp` is what runs, `amp_requested` what was asked for (a resumed run keeps
    its saved `amp`, the precision its checkpoints and cached features were made with)."""
    args.amp_requested = bool(args.amp or args.amp_requested)
    if args.amp and device.type != "cuda" and is_main:
        log.warning(
            "--amp is bf16 autocast on CUDA only; this run is on %s, so it runs in float32",
            device.type,
        )
    args.amp = bool(args.amp and device.type == "cuda")


def where_it_went(out: Path, best_epoch: int | None, demo: bool = False, given=()) -> str:
    """The run folder, its files and the next commands (printed at the end of a run); for the
    demo also how to run it again (the exact command when only --demo, --out and --progress
    were given)."""
    files = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    again = ""
    if demo and set(given) <= {"demo", "out", "progress"}:
        again = f"; again: python train.py --demo --out {out}-2"
    elif demo:
        again = f"; again: the same command with --out {out}-2"
    return (
        f"run folder {out} (best epoch {best_epoch}): {', '.join(files)}\n"
        f"next: python evaluate.py --checkpoint {out / 'best.pt'}; "
        f"python retrieve.py index --checkpoint {out / 'best.pt'} --out {out / 'index'}{again}"
    )
