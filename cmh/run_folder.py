"""The run folder's files: logging to train.log, metrics.jsonl, and the saved arguments.

A run folder (``--out``) holds ``args.json`` (every argument), ``train.log``, ``metrics.jsonl``
(one line per epoch, written before ``last.pt`` so a crash never loses a line the checkpoint
has), ``last.pt`` / ``best.pt`` (:mod:`cmh.checkpoint_io`) and the final ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from cmh.errors import UserError

log = logging.getLogger("train")


def check_new_run(out: Path, resume: bool) -> None:
    """A fresh start must not overwrite a run: refuse an ``out`` that holds last.pt."""
    if not resume and (out / "last.pt").exists():
        raise UserError(
            f"{out} already holds a run (last.pt); pass --resume to continue it or "
            "choose another --out"
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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(x + "\n" for x in kept))
    os.replace(tmp, path)


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


RESUME_OVERRIDES = ("epochs", "eval_every", "device", "num_workers")


def resumed_args(args: argparse.Namespace) -> argparse.Namespace:
    """--resume continues with the run's saved arguments; only RESUME_OVERRIDES given on the
    command line (e.g. more --epochs, another --device) replace them."""
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
    for key in RESUME_OVERRIDES:
        if key in args.given:
            saved[key] = getattr(args, key)
    saved["out"] = args.out  # where the run is now, even if it was moved since
    return argparse.Namespace(**{**saved, "resume": True, "given": args.given})


def resolve_amp(args: argparse.Namespace, device: torch.device, is_main: bool) -> None:
    """--amp is bf16 autocast on CUDA only. Elsewhere the run is float32, logged once (rank 0) and
    kept in args.json: `amp` is what runs, `amp_requested` what was asked for (a resumed run keeps
    its saved `amp`, the precision its checkpoints and cached features were made with)."""
    args.amp_requested = bool(args.amp or getattr(args, "amp_requested", False))
    if args.amp and device.type != "cuda" and is_main:
        log.warning(
            "--amp is bf16 autocast on CUDA only; this run is on %s, so it runs in float32",
            device.type,
        )
    args.amp = bool(args.amp and device.type == "cuda")
