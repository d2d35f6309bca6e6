"""The learning fixture checks itself, and its check can fail: a collapsed text tower (one code
for every caption) is caught, so no comparison between two code paths compares constants."""

from __future__ import annotations

import shutil

import pytest
import torch
from learning import assert_learned, distinct_fraction

from cmh.runs.checkpoints import load_checkpoint, save_checkpoint


def test_the_learned_run_is_diverse_and_above_chance(learned_run):
    report = assert_learned(learned_run)
    assert set(report["distinct"]) == {"image", "text"}


def test_distinct_fraction():
    codes = torch.tensor([[1, -1], [1, -1], [-1, 1], [1, 1]], dtype=torch.int8).numpy()
    assert distinct_fraction(codes) == 0.75


def test_a_constant_text_tower_is_caught(learned_run, tmp_path):
    """The learned run with its text hash layer replaced by a constant (weights 0, bias 1: every
    caption gets the all-ones code) fails the fixture's check."""
    run = tmp_path / "collapsed"
    shutil.copytree(learned_run, run)
    state = load_checkpoint(run / "best.pt")
    state["model"]["text.head.linear.weight"].zero_()
    state["model"]["text.head.linear.bias"].fill_(1.0)
    save_checkpoint(state, run / "best.pt")
    with pytest.raises(AssertionError):
        assert_learned(run)
