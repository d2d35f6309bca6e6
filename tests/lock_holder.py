"""A child process that holds a one-writer lock, for the tests of what a second writer sees."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

HOLD = textwrap.dedent(
    """
    import sys, time
    from cmh.utils.folder_lock import file_lock
    with file_lock(sys.argv[1], wait=sys.argv[2] == "wait"):
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
    """
)


def hold(path: Path, seconds: float = 60, wait: bool = False) -> subprocess.Popen:
    """A child process holding the lock file ``path``; returns once it holds it (kill it after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "wait" if wait else "now", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "held"
    return child
