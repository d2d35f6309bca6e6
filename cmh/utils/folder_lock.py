"""One writer per folder: an exclusive lock held for the life of every process that writes one.

    with folder_lock(out, "a training run"):   # a second writer is refused at once (UserError)
        ...                                    # naming the folder and the holder

    with file_lock(cache.with_suffix(".lock")):   # a shared file: wait for the holder, then go on
        ...

The lock is ``fcntl.flock`` on a file inside the folder (``.writer.lock``, which holds the
holder's pid, host, start time and command for the refusal message). The kernel releases it when
the process ends, however it ends (an error, Ctrl-C, ``kill -9``, a reboot), so a lock left by a
dead process never blocks a later run and there is nothing to clean up by hand; the file itself
stays and means nothing without a holder. Network file systems: on Linux, flock on NFS is carried
out as a POSIX byte-range lock through the server (NFSv4, or NLM for v3), so it holds between
hosts where the server supports locking; NFS mounted with ``nolock`` keeps locks on each client,
so there it guards against a second writer on the same host only. A file system that refuses
locks (ENOLCK, EOPNOTSUPP: some FUSE mounts) gets a warning and the writer runs unguarded; the
same where ``fcntl`` does not exist (Windows).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cmh.utils.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".writer.lock"
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
_HELD: set[int] = set()  # this process's lock file descriptors


def _drop_in_child() -> None:
    """A forked child (a data-loader worker) closes its copies of the lock descriptors: a flock
    lives as long as any process holds the open file, so a worker outliving a killed trainer for
    a moment would otherwise keep the folder locked. (exec closes them anyway: os.open's
    descriptors are not inheritable.)"""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


def holder_text() -> str:
    """What a lock file says about its holder (this process): pid, host, start time, command."""
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        }
    )


def describe_holder(path: Path) -> str:
    """ "pid 123 on HOST since TIME: COMMAND" from a held lock file (read a few times: the holder
    writes it just after taking the lock)."""
    for _ in range(20):
        try:
            h = json.loads(path.read_text(encoding="utf-8"))
            return f"pid {h['pid']} on {h['host']} since {h['started']}: {h['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.02)
    return f"a process that has not said who it is yet ({path})"


def _warn_unguarded(path: Path, reason: str) -> None:
    print(
        f"warning: {path.parent}: {reason}; nothing stops a second process from writing "
        "into this folder at the same time",
        file=sys.stderr,
    )


@contextmanager
def file_lock(path: str | Path, wait: bool = True, what: str = "") -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the block. ``wait``: block
    until the holder lets go; else refuse at once (UserError naming ``what``, the folder and the
    holder). The file is left in place: unlinking a lock file races with a process opening it."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        _warn_unguarded(path, "no fcntl on this system, so no lock")
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    _HELD.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UserError(
                f"{path.parent} is in use: {what or 'another process'} is writing there "
                f"({describe_holder(path)}). Wait for it to end, or choose another folder"
            ) from None
        except OSError as e:
            if e.errno not in UNSUPPORTED:
                raise
            _warn_unguarded(path, f"the file system refuses locks ({e.strerror})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_text().encode(), 0)
        yield
    finally:
        _HELD.discard(fd)
        os.close(fd)  # releases the lock


@contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """The one-writer lock of ``folder`` (which must exist): refused at once when held."""
    with file_lock(Path(folder) / LOCK_NAME, wait=False, what=what):
        yield


@contextmanager
def writing_folder(
    folder: str | Path, what: str, done_when: str, take_back=(BaseException,)
) -> Iterator[Path]:
    """Create ``folder`` if needed and hold its one-writer lock for the block. A start that ends
    in one of the ``take_back`` exceptions before ``done_when`` exists there (the file that says
    the folder holds a result: last.pt, summary.json, meta.json) takes back what this process
    added: the files it made, and the folder when it made it. A folder that another writer holds
    is left alone."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder, what):
        before = set(os.listdir(folder)) - {LOCK_NAME}
        try:
            yield folder
        except take_back:  # e.g. a refusal, a crash, Ctrl-C: the state before this start is kept
            if not (folder / done_when).exists():
                _take_back(folder, before, made)
            raise


def _take_back(folder: Path, before: set[str], made: bool) -> None:
    """Remove the plain files added to ``folder`` since ``before`` (and the folder if ``made``
    and nothing else is left). An open log file among them is unlinked, not closed: on POSIX
    its writer goes on writing to nobody, without an error."""
    for name in set(os.listdir(folder)) - before:
        path = folder / name
        if path.is_file() and (made or name != LOCK_NAME):
            path.unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):  # something else is there: leave it
            folder.rmdir()
