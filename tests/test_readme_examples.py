"""The README's demo numbers and retrieval examples are what the code prints today.

One module fixture runs ``python train.py --demo`` (in a temporary working directory, so
``cache/demo`` and ``runs/demo`` are its own), then every ``$ python retrieve.py ...`` line of
the README's output blocks is run in that directory and its stdout compared with the lines the
README shows under it. The demo is deterministic (crops and flips are drawn from seed, epoch and
item), so any change to the data generator, the models, the loss or the ranking that moves a
number or a retrieved id makes this fail until the README is regenerated.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

import retrieve
import train

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
REPO_PLACEHOLDER = "/path/to/repo"  # the README's stand-in for the clone's absolute path


def code_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks (any info string), in order."""
    return re.findall(r"^```[a-z]*\n(.*?)^```$", text, flags=re.S | re.M)


def shell_sessions(text: str, program: str) -> list[tuple[str, list[str]]]:
    """(command, expected stdout lines) for each ``$ python PROGRAM ...`` line of the blocks."""
    sessions = []
    for block in code_blocks(text):
        current = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = (line[2:], []) if line.startswith(f"$ python {program} ") else None
                if current is not None:
                    sessions.append(current)
            elif current is not None:
                current[1].append(line)
    return sessions


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``python train.py --demo`` as the README runs it, from a fresh working directory."""
    cwd = tmp_path_factory.mktemp("readme-demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        assert train.main(["--demo", "--no-progress"]) == 0
    return cwd


def test_the_demo_table_is_what_the_demo_prints(demo_run):
    results = json.loads((demo_run / "runs/demo/results.json").read_text())
    tables = [b for b in code_blocks(README) if b.startswith("direction   mAP(index)")]
    assert len(tables) == 1, "the README shows the demo's table once, at the top"
    shown = {line.split()[0]: line.split()[1:] for line in tables[0].splitlines()[1:]}
    for direction in ("I2T", "T2I"):
        d = direction.lower()
        values = (results[f"map_{d}"], results[f"map_{d}_tie_avg"], results[f"chance_{d}"])
        printed = [f"{v:.4f}" for v in values]
        assert shown[direction] == printed, (direction, shown[direction], printed)
    row = re.search(r"^\| demo \(generated\) \| 32 \| (\S+) \| (\S+) \| (\S+) \|", README, re.M)
    assert row is not None, "the Results table has a demo row"
    expected = (results["map_i2t"], results["map_t2i"], results["chance_i2t"])
    assert row.groups() == tuple(f"{v:.4f}" for v in expected)
    assert f"(epoch {results['best_epoch']})" in README


def test_the_retrieval_examples_are_what_retrieve_prints(demo_run, capsys):
    sessions = shell_sessions(README, "retrieve.py")
    kinds = [shlex.split(command)[2] for command, _ in sessions]
    assert kinds.count("index") == 1 and kinds.count("query") >= 2, kinds
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo_run)
        for command, expected in sessions:
            capsys.readouterr()
            assert retrieve.main(shlex.split(command)[2:]) == 0, command
            printed = capsys.readouterr().out.replace(str(demo_run.resolve()), REPO_PLACEHOLDER)
            assert printed.rstrip("\n").splitlines() == expected, command


def test_the_session_parser_reads_commands_and_their_output():
    text = "```\n$ python retrieve.py a\none\ntwo\n$ ls\nx\n$ python retrieve.py b\n```\n"
    assert shell_sessions(text, "retrieve.py") == [
        ("python retrieve.py a", ["one", "two"]),
        ("python retrieve.py b", []),
    ]
