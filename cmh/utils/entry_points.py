"""Running the project's entry points (train.py, evaluate.py, retrieve.py, data.py) from library
code and scripts: in a child process, as a user would, never by importing them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cmh.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]  # the checkout: the entry points sit beside cmh/
ENTRY_POINTS = ("train", "evaluate", "retrieve", "data")


def entry_point(name: str) -> Path:
    """The path of ``python NAME.py``."""
    script = REPO / f"{name}.py"
    if name not in ENTRY_POINTS or not script.is_file():
        raise UserError(f"no entry point {name}.py beside the cmh package in {REPO}")
    return script


def run_entry_point(name: str, argv: list) -> int:
    """``python NAME.py ARGV`` with this interpreter; its exit status (its output goes to ours)."""
    command = [sys.executable, str(entry_point(name)), *(str(a) for a in argv)]
    return subprocess.run(command, check=False).returncode
