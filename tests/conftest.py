"""Shared fixtures: a tiny generated dataset (demo generator -> prepare) and tiny-model flags."""

from __future__ import annotations

from pathlib import Path

import pytest

# Flags for a tiny, fast, offline model: random ResNet-18 at 32 px, a 2-layer BERT of width 64
# with a WordPiece vocabulary trained on the training captions.
TINY_FLAGS = [
    "--image-size",
    "32",
    "--image-weights",
    "none",
    "--text-model",
    "tiny",
    "--bits",
    "16",
    "--margin",
    "6",
    "--batch-size",
    "16",
    "--lr",
    "1e-3",
    "--max-length",
    "24",
    "--eval-every",
    "1",
]


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory) -> Path:
    """A prepared dataset of 120 generated items (12 query, 60 train, 12 val), 32 px images."""
    import data

    root = tmp_path_factory.mktemp("tiny-demo")
    assert data.main(["demo", "--out", str(root), "--n-items", "120", "--image-size", "32"]) == 0
    return root / "prepared"


@pytest.fixture
def tiny_flags() -> list[str]:
    return list(TINY_FLAGS)
