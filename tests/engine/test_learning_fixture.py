"""The learning fixture checks itself, and its check can fail: a collapsed text tower (one code
for every caption) is caught, so no comparison between two code paths compares constants."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import COMPARE_FLAGS
from learning import assert_diverse, assert_learned, distinct_fraction

import train
from cmh.runs.checkpoints import load_checkpoint, save_checkpoint


def test_the_learned_run_is_diverse_and_above_chance(learned_run):
    report = assert_learned(learned_run)
    assert set(report["distinct"]) == {"image", "text"}
    r = report["results"]  # what conftest's comment quotes (`pytest -n 0 -s` shows it)
    print(f"\nLEARN_FLAGS: I2T chance + {r['map_i2t'] - r['chance_i2t']:.2f}, T2I chance + "
          f"{r['map_t2i'] - r['chance_t2i']:.2f}, distinct {report['distinct']}")  # fmt: skip


def test_the_compare_flags_give_diverse_codes_after_one_epoch(tiny_prepared, tmp_path):
    """conftest.COMPARE_FLAGS' premise: one epoch gives both towers codes of their own."""
    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *COMPARE_FLAGS, "--epochs", "1"]
    assert train.main(argv) == 0
    print(f"\nCOMPARE_FLAGS after one epoch: distinct {assert_diverse(out)}")


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
