"""Checkpoints that survive a kill at any moment and load without running foreign code.

A checkpoint is a dict of plain types and tensors only (model state, model config, optimizer state,
epoch, best metric, arguments, RNG states), written to a temporary file in the same folder, flushed
to disk, then renamed over the old one: a crash leaves either the old file or the new one, never a
torn file. Loading checks the CRC-32 of every entry of the file (torch writes a zip archive; torch
itself does not check them, so a flipped bit in a tensor would otherwise load as a wrong weight), then
uses `torch.load(..., weights_only=True)`, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from cmh.utils.atomic_io import atomic_path
from cmh.utils.errors import UserError

ZIP_MAGIC = b"PK\x03\x04"


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write `state` to `path` atomically. On failure (disk full, ...) the previous file is intact.

    The temporary file is `.NAME.tmp-PID` beside `path`; ones left by killed runs are removed after
    a successful write.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(state, f)
    except OSError as e:
        raise UserError(
            f"could not write checkpoint {path} ({e.strerror or e}); the previous checkpoint, "
            "if any, is intact. Free disk space or choose another --out"
        ) from e
    remove_stale_temporaries(path)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete `.NAME.tmp-PID` files beside `path` whose process no longer runs (a run killed while
    writing). Returns the deleted paths."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _first_line(e: BaseException) -> str:
    """`Type: first line of the message` (the type alone when the message is empty)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def _unpickler_detail(e: pickle.UnpicklingError) -> str:
    """What torch's weights_only unpickler objected to (its 'WeightsUnpickler error:' line; the
    rest of its message suggests weights_only=False, which is not advice to pass on)."""
    for line in str(e).splitlines():
        if "WeightsUnpickler error:" in line:
            detail = line.split("WeightsUnpickler error:", 1)[1].split(". Please use")[0]
            return detail.strip() or "unreadable pickle data"
    return "unreadable pickle data"


def check_integrity(path: Path) -> None:
    """UserError if `path` is empty, a cut-off zip archive, or a zip archive whose entries fail
    their CRC-32 check. A file that is not a zip archive at all is left to torch.load."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise UserError(
            f"checkpoint {path} is empty (0 bytes); the write that made it was cut short"
        )
    if head != ZIP_MAGIC:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(
            f"checkpoint {path} is truncated or corrupted: its zip directory is unreadable "
            f"({_first_line(e)}); use another checkpoint (best.pt or last.pt)"
        ) from e
    if bad is not None:
        raise UserError(
            f"checkpoint {path} is corrupted: entry '{bad}' fails its CRC-32 check (the file "
            "changed after it was written); use another checkpoint (best.pt or last.pt)"
        )


def check_checkpoint_file(path: str | Path) -> None:
    """UserError unless ``path`` is a file (cheap: one stat, before anything is loaded)."""
    if not Path(path).is_file():
        raise UserError(f"checkpoint {path} does not exist")


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by `save_checkpoint` on the CPU, refusing anything unsafe or
    damaged with a UserError naming the file."""
    path = Path(path)
    check_checkpoint_file(path)
    check_integrity(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        if "Unsupported global" not in detail:  # a damaged stream, not a forbidden object
            raise UserError(f"checkpoint {path} is truncated or corrupted ({detail})") from e
        raise UserError(
            f"refusing to load {path}: it holds objects other than tensors and plain types "
            f"({detail}), and unpickling them could run arbitrary code; only checkpoints "
            "written by train.py are accepted"
        ) from e
    except MemoryError:
        raise
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError... on damaged files
        raise UserError(f"checkpoint {path} is truncated or corrupted ({_first_line(e)})") from e
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise UserError(f"{path} is not a checkpoint of this project (no 'model'/'model_config')")
    return state
