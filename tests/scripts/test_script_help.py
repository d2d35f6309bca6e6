"""Every script of scripts/ answers --help (and -h) with its usage and exits 0, before doing
anything else; the sweep scripts also say what passes through to train.py and how to run some
of the code lengths (--bits)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELL = sorted(p.name for p in (ROOT / "scripts").glob("*.sh") if p.name != "usage.sh")
PYTHON = sorted(p.name for p in (ROOT / "scripts").glob("*.py") if p.name != "__init__.py")


def ask_help(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SHELL)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_shell_scripts_print_their_usage(script, flag, tmp_path):
    r = ask_help(["bash", str(ROOT / "scripts" / script), flag], tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert f"bash scripts/{script} " in r.stdout  # the usage lines
    assert "train.py" in r.stdout and "--bits" in r.stdout
    assert not r.stdout.startswith("#!") and "set -euo" not in r.stdout
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.parametrize("script", PYTHON)
def test_python_scripts_print_their_usage(script, tmp_path):
    r = ask_help([sys.executable, str(ROOT / "scripts" / script), "--help"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f"usage: {script}")
    assert list(tmp_path.iterdir()) == []


def test_the_list_covers_the_folder():
    assert {"run_all_bits.sh", "reproduce_seed.sh", "compare_objectives.sh"} <= set(SHELL)
    assert "results_table.py" in PYTHON and "objective_results.py" in PYTHON
