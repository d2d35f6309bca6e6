"""The README's demo numbers and retrieval examples are what the code prints today.

The demo is deterministic on a CPU (crops and flips are drawn from (seed, epoch, item)), so
``python train.py --demo`` run here, in a fresh folder, must print the README's table, and each
``$ python ...`` line of the README's retrieval section, run in that folder, must print exactly
the lines below it. Regenerate the README's blocks by running the same commands after any change
that moves the numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
from pathlib import Path

import pytest

import evaluate
import retrieve
import train

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def examples(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected stdout lines) of every ``$ python ...`` line in the text's code
    blocks; the expected lines are those up to the next command or the end of the block."""
    found = []
    for block in re.findall(r"```\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found and found[-1][1] is not None and line.strip():
                found[-1][1].append(line.rstrip())
    return found


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    """``python train.py --demo`` run in a fresh folder (cache/demo, runs/demo inside it)."""
    folder = tmp_path_factory.mktemp("readme-demo")
    here = os.getcwd()
    os.chdir(folder)
    try:
        assert train.main(["--demo", "--no-progress"]) == 0
    finally:
        os.chdir(here)
    return folder


def test_demo_prints_the_readme_table(demo_folder):
    results = json.loads((demo_folder / "runs" / "demo" / "results.json").read_text())
    table = evaluate.format_table(results)
    intro = section("Two commands on a fresh machine")
    assert table in intro, f"README's demo table is stale; the demo now prints:\n{table}"


def test_readme_retrieval_examples_print_what_they_show(demo_folder, monkeypatch):
    cases = examples(section("Retrieval: index a database, query it by text, image or item"))
    assert len(cases) >= 3, "the retrieval section lost its examples"
    monkeypatch.chdir(demo_folder)
    for command, expected in cases:
        words = shlex.split(command)
        assert words[:2] == ["python", "retrieve.py"], command
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert retrieve.main(words[2:]) == 0, command
        printed = [line.rstrip() for line in stdout.getvalue().splitlines() if line.strip()]
        assert printed == expected, f"README example is stale: {command}\nprints:\n" + "\n".join(
            printed
        )
