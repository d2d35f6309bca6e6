"""Progress bars only where someone watches: on a terminal, or when asked (``--progress``).

Every loop that shows a bar goes through :func:`bar`; entry points call :func:`configure` with
their ``--progress`` / ``--no-progress`` flag. Captured logs (CI, ``nohup``, a pipe) then carry
no escape sequences.
"""

from __future__ import annotations

import argparse
import sys

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


def add_flag(add) -> None:
    """``--progress`` / ``--no-progress`` (default: only on a terminal)."""
    add(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: only when stderr is a terminal)",
    )
