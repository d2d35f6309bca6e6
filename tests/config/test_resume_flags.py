"""--resume refuses a flag that would change the run, and the default --margin scales with --bits.

One tiny run (1 epoch, conftest.TINY_FLAGS: 16 bits, margin 6) is resumed with changed and with
unchanged flags; the margin tests stop at the first loss call (args.json is written before it).
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY_FLAGS

import train
from cmh.objectives import triplet as triplet_objective


def tiny_run(prepared, out, *extra: str) -> int:
    argv = ["--data", str(prepared), "--out", str(out), *TINY_FLAGS, "--epochs", "1"]
    return train.main([*argv, "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def first_run(tiny_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume-flags") / "run"
    assert tiny_run(tiny_prepared, out) == 0
    return out


@pytest.mark.parametrize(
    "changed, named",
    [
        (["--bits", "64"], "--bits 64 differs from the run's 16"),
        (["--lr", "5e-2"], "--lr 0.05 differs from the run's 0.001"),
        (["--margin", "3"], "--margin 3.0 differs from the run's 6.0"),
        (["--no-amp", "--amp"], "--amp differs from the run's False"),
        (["--seed", "3"], "--seed 3 differs from the run's 0"),
    ],
)
def test_resume_refuses_a_changed_flag(first_run, capsys, changed, named):
    before = {p: (first_run / p).read_bytes() for p in ("last.pt", "args.json", "metrics.jsonl")}
    assert train.main(["--out", str(first_run), "--resume", "--epochs", "2", *changed]) == 2
    err = capsys.readouterr().err
    assert f"error: --resume: {named} ({first_run / 'args.json'})" in err
    assert (
        "only --epochs, --eval-every, --device, --num-workers, --progress, --query-every may change on resume"
        in err
    )
    after = {p: (first_run / p).read_bytes() for p in before}
    assert after == before  # nothing trained, nothing rewritten


@pytest.mark.parametrize("flag", ["--data", "--feature-cache"])
def test_resume_refuses_another_folder(first_run, tiny_prepared, tmp_path, capsys, flag):
    """Path flags are compared as the folders they name: another folder is refused (the same
    folder written otherwise is accepted: test_resume_accepts_more_epochs_and_equal_flags)."""
    other = tmp_path / "elsewhere"
    shutil.copytree(tiny_prepared, other)  # a folder that exists and holds the same data
    assert train.main(["--out", str(first_run), "--resume", "--epochs", "2", flag, str(other)]) == 2
    err = capsys.readouterr().err
    assert f"error: --resume: {flag} {other} " in err and "differs from the run's" in err


def test_resume_names_every_changed_flag(first_run, capsys):
    argv = ["--out", str(first_run), "--resume", "--bits", "64", "--margin", "3", "--lr", "5e-2"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    for named in ("--bits 64 differs", "--lr 0.05 differs", "--margin 3.0 differs"):
        assert named in err


def test_resume_accepts_more_epochs_and_equal_flags(first_run, tiny_prepared, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run, out)
    given = json.loads((out / "args.json").read_text())["given"]
    assert "lr" in given and "resume" not in given
    equal = ["--bits", "16", "--margin", "6", "--lr", "0.001", "--data", f"{tiny_prepared}/"]
    assert train.main(["--out", str(out), "--resume", "--epochs", "2", *equal]) == 0
    saved = json.loads((out / "args.json").read_text())
    assert saved["epochs"] == 2 and saved["bits"] == 16 and saved["margin"] == 6.0
    assert saved["given"] == given  # the first start's flags, not the resume's
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_resume_of_a_demo_run(tiny_prepared, tmp_path):
    """A --demo run saves `data` as its demo folder; resuming it must not read as --demo --data."""
    out = tmp_path / "run"
    demo = ["--demo", "--demo-dir", str(tiny_prepared.parent)]
    assert train.main([*demo, "--out", str(out), *TINY_FLAGS, "--epochs", "1"]) == 0
    assert train.main(["--out", str(out), "--resume", "--demo", "--epochs", "2"]) == 0
    assert json.loads((out / "args.json").read_text())["epochs"] == 2


class _FirstLoss(Exception):
    pass


def first_margin(monkeypatch, prepared, out, *extra: str) -> float:
    """The margin of the run's first triplet_objective.hashing_loss call (the run stops there)."""
    seen = []

    def spy(image_codes, text_codes, labels, margin, **kwargs):
        seen.append(margin)
        raise _FirstLoss

    monkeypatch.setattr(triplet_objective, "hashing_loss", spy)
    flags = [f for i, f in enumerate(TINY_FLAGS) if "--margin" not in TINY_FLAGS[i - 1 : i + 1]]
    argv = ["--data", str(prepared), "--out", str(out), *flags, "--epochs", "1", *extra]
    with pytest.raises(_FirstLoss):
        train.main(argv)
    return seen[0]


@pytest.mark.parametrize("bits, margin", [(16, 6.0), (64, 24.0)])
def test_default_margin_scales_with_bits(monkeypatch, tiny_prepared, tmp_path, bits, margin):
    out = tmp_path / "run"
    assert first_margin(monkeypatch, tiny_prepared, out, "--bits", str(bits)) == margin
    saved = json.loads((out / "args.json").read_text())
    assert saved["bits"] == bits and saved["margin"] == margin and "margin" not in saved["given"]


def test_explicit_margin_wins(monkeypatch, tiny_prepared, tmp_path):
    out = tmp_path / "run"
    assert first_margin(monkeypatch, tiny_prepared, out, "--bits", "64", "--margin", "3") == 3.0
    saved = json.loads((out / "args.json").read_text())
    assert saved["margin"] == 3.0 and "margin" in saved["given"]


def test_default_margin_in_parse_args():
    assert train.parse_args(["--bits", "16"]).margin == 6.0
    assert train.parse_args(["--bits", "64"]).margin == 24.0
    assert train.parse_args([]).margin == 12.0
    assert train.parse_args(["--demo"]).margin == 12.0  # the demo is 32 bits
    assert train.parse_args(["--demo", "--bits", "64", "--margin", "5"]).margin == 5.0
