"""Ctrl-C (SIGINT) and SIGTERM as one clean stop: an :class:`Interrupted` raised in the main
thread where the work is, never inside a file being written.

    with stop_on_signals():          # SIGINT / SIGTERM raise Interrupted(signum) from here on
        ...
        with signals_held():         # a signal arriving in here is raised when the block ends
            write_checkpoint()

``Interrupted.exit_status`` is the shell's: 130 for SIGINT, 143 for SIGTERM. It derives from
BaseException, as KeyboardInterrupt does, so no ``except Exception`` swallows it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_held = {"depth": 0, "pending": None}


class Interrupted(BaseException):
    """The process was asked to stop (``signum``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_status = 128 + signum


def _raise(signum, frame) -> None:
    if _held["depth"]:
        _held["pending"] = signum
        return
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in this (main) thread for the block; the
    previous handlers come back after it. Elsewhere than the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """A signal that arrives in the block is raised (as :class:`Interrupted`) when it ends, so the
    block's files are written whole."""
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        pending, _held["pending"] = _held["pending"], None
        if pending is not None and not _held["depth"]:
            raise Interrupted(pending)
        if pending is not None:
            _held["pending"] = pending
