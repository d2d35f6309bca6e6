"""Files that a crash, a kill or a second process never leaves half-written.

Everything is written to a temporary file beside its target (``.NAME.tmp-PID``), flushed to
disk, then renamed onto the target (``os.replace``, atomic on one file system): a reader sees
the old file or the new one, never a torn one; on an error the temporary file is removed and the
old file stays.

    with atomic_path(RUN / "last.pt") as tmp:   # any writer that takes a path
        torch.save(state, tmp)
    write_text_atomic(RUN / "results.json", text)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """The temporary file of ``path`` for this process (hidden, beside it)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on leaving the block without an
    error it is synced to disk and renamed onto ``path``; on an error it is removed."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` (UTF-8) into ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
