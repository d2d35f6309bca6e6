"""Long one-time steps say how far they are when no terminal watches: a plain line every
LINE_EVERY_S seconds (cmh.utils.progress.long_step); short loops print nothing."""

from __future__ import annotations

import time

import pytest

from cmh.utils import progress


@pytest.fixture
def off_terminal():
    progress.configure(False)
    yield
    progress.configure(None)


def slow(n: int, pause: float):
    for i in range(n):
        time.sleep(pause)
        yield i


def test_lines_every_interval_with_the_share_done(off_terminal, capsys):
    assert list(progress.long_step(slow(6, 0.05), "extract features", total=6, every=0.08)) == list(range(6))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3 and "\x1b" not in "".join(lines)
    assert lines[0].startswith("extract features: ") and "/6 (" in lines[0] and "%), " in lines[0]
    assert lines[-1].startswith("extract features: done, 6 in ")


def test_a_short_step_prints_nothing(off_terminal, capsys):
    assert sum(progress.long_step(range(1000), "encode database", every=60)) == sum(range(1000))
    assert capsys.readouterr().err == ""


def test_the_total_comes_from_len_and_may_be_unknown(off_terminal, capsys):
    list(progress.long_step([0.05] * 3, "with len", every=0.0))
    assert "with len: 1/3 (33%), " in capsys.readouterr().err
    list(progress.long_step(iter([1, 2]), "no len", every=0.0))
    assert "no len: 1, " in capsys.readouterr().err


def test_frozen_feature_extraction_goes_through_it(tiny_prepared, tiny_flags, tmp_path, capsys,
                                                   monkeypatch, off_terminal):  # fmt: skip
    import train

    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # a line after every batch
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *tiny_flags, "--epochs",
            "1", "--freeze-backbones", "--feature-cache", str(tmp_path / "f"), "--no-progress"]  # fmt: skip
    assert train.main(argv) == 0
    err = capsys.readouterr().err
    assert "extract features: 1/" in err and "extract features: done, " in err
