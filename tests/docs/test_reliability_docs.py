"""docs/errors.md cannot rot: every test it names exists, every reliability test is named, and a
row marked pending names a test still marked xfail (and only such rows do)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "errors.md"
# The files of reliability tests (errors a user meets, kills, bad input): each of their tests
# has its row in docs/errors.md.
RELIABILITY_FILES = (
    "data/test_data_errors.py",
    "utils/test_cli_errors.py",
    "runs/test_checkpoints.py",
    "runs/test_kill_and_resume.py",
    "engine/test_train_failures.py",
)
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def table_rows() -> list[str]:
    lines = [x for x in DOC.read_text().splitlines() if x.startswith("| ")]
    return lines[1:]  # the header; the |---| line does not start with "| "


def source_of(path: str, name: str) -> str | None:
    """The source of test `name` in `path` with its decorators (tests are separated by two blank
    lines, as ruff format writes them); None if there is no such test."""
    source = (ROOT / path).read_text() if (ROOT / path).is_file() else ""
    for block in source.split("\n\n\n"):
        if re.search(rf"^def {name}\(", block, re.MULTILINE):
            return block
    return None


def test_every_named_test_exists():
    rows = table_rows()
    assert len(rows) >= 40
    for row in rows:
        refs = REF.findall(row)
        assert refs, f"a row names no test: {row[:80]}"
        for path, name in refs:
            assert source_of(path, name) is not None, f"{path}::{name} does not exist"


def test_every_reliability_test_is_in_the_table():
    named = {ref for row in table_rows() for ref in REF.findall(row)}
    files = [ROOT / "tests" / f for f in RELIABILITY_FILES]
    for path in files:
        for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.MULTILINE):
            rel = str(path.relative_to(ROOT))
            assert (rel, name) in named, f"{rel}::{name} is not in {DOC}"


def test_pending_rows_match_xfail_tests():
    for row in table_rows():
        xfail = [name for path, name in REF.findall(row) if "xfail(" in source_of(path, name)]
        if "**pending**" in row:
            assert xfail, f"pending, but no test is marked xfail any more: {row[:100]}"
        else:
            assert not xfail, f"{xfail} marked xfail, but the row is not marked pending"
