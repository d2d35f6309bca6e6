"""Progress bars only where someone watches: on a terminal, or when asked (``--progress``).

Every loop that shows a bar goes through :func:`bar`; entry points call :func:`configure` with
their ``--progress`` / ``--no-progress`` flag. Captured logs (CI, ``nohup``, a pipe) then carry
no escape sequences. Long one-time steps (feature extraction, image caches, encoding a database)
go through :func:`long_step`: a bar where bars are on, and elsewhere a plain line on stderr every
``LINE_EVERY_S`` seconds while the step lasts longer than that (short loops print nothing).
"""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

_forced: bool | None = None  # None: decide by whether stderr is a terminal


def configure(flag: bool | None) -> None:
    """True: bars on; False: off; None: only when stderr is a terminal."""
    global _forced
    _forced = flag


def enabled() -> bool:
    return _forced if _forced is not None else sys.stderr.isatty()


def bar(iterable, desc: str, disable: bool = False, **kwargs):
    """``tqdm`` over ``iterable`` unless bars are off (or ``disable``, e.g. on other ranks)."""
    return tqdm(
        iterable,
        desc=desc,
        leave=False,
        dynamic_ncols=True,
        disable=disable or not enabled(),
        **kwargs,
    )


LINE_EVERY_S = 30.0


def long_step(iterable, desc: str, total: int | None = None, every: float | None = None):
    """Iterate ``iterable`` showing progress: a bar (:func:`bar`) where bars are on; otherwise a
    line "DESC: 12/60 (20%), 31 s" on stderr each ``every`` seconds, and "DESC: done, 60 in 148 s"
    at the end when any line was printed. ``total`` defaults to ``len(iterable)``, ``every`` to
    LINE_EVERY_S."""
    if enabled():
        yield from bar(iterable, desc, total=total)
        return
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    every = LINE_EVERY_S if every is None else every
    start = last = time.monotonic()
    n, printed = 0, False
    for item in iterable:
        yield item
        n, now = n + 1, time.monotonic()
        if now - last >= every:
            share = f"/{total} ({100 * n / total:.0f}%)" if total else ""
            print(f"{desc}: {n}{share}, {now - start:.0f} s", file=sys.stderr, flush=True)
            last, printed = now, True
    if printed:
        print(f"{desc}: done, {n} in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)


def add_flag(add) -> None:
    """``--progress`` / ``--no-progress`` (default: only on a terminal)."""
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: only when stderr is a terminal)",
    )
