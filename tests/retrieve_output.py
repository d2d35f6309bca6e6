"""Reading what ``retrieve.py query`` prints (tests/retrieval/, tests/evaluation/)."""

from __future__ import annotations


def printed_rows(out: str) -> list[tuple[int, int]]:
    """(id, hamming) of each result line printed by `retrieve.py query`."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rank  id")) + 1
    rows = [line for line in lines[start:] if line.strip() and not line.startswith("+")]
    return [(int(line.split()[1]), int(line.split()[2])) for line in rows]  # "+N more": the ties
