"""Checkpoints that survive a kill at any moment and load without running foreign code.

A checkpoint is a dict of plain types and tensors only (model state, model config, optimizer state,
epoch, best metric, arguments, RNG states), written to a temporary file in the same folder, flushed
to disk, then renamed over the old one: a crash leaves either the old file or the new one, never a
torn file. Loading uses `torch.load(..., weights_only=True)`, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from errors import UserError


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write `state` to `path` atomically. On failure (disk full, ...) the previous file is intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"could not write checkpoint {path} ({e.strerror or e}); the previous checkpoint, "
            "if any, is intact. Free disk space or choose another --out"
        ) from e


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by `save_checkpoint` on the CPU, refusing anything unsafe."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"refusing to load {path}: it holds objects other than tensors and plain types "
            f"(weights_only load failed: {str(e).splitlines()[0]})"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupted ({e})") from e
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise UserError(f"{path} is not a checkpoint of this project (no 'model'/'model_config')")
    return state
