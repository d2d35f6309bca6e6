"""--init-from (cmh/runs/warm_start.py): a fresh run that starts from another run's weights."""

from __future__ import annotations

import json

import pytest
import torch

import train
from cmh.engine import run_setup
from cmh.runs.checkpoints import load_checkpoint


@pytest.fixture(scope="module")
def probe(tiny_prepared, tmp_path_factory):
    """A frozen-feature run (hash layers trained on fixed random towers): the linear probe."""
    from conftest import TINY_FLAGS

    out = tmp_path_factory.mktemp("probe") / "run"
    flags = [*TINY_FLAGS, "--freeze-backbones", "--epochs", "2", "--seed", "3", "--no-progress"]
    assert train.main(["--data", str(tiny_prepared), "--out", str(out), *flags]) == 0
    return out / "best.pt"


def _model(tiny_prepared, tmp_path, tiny_flags, *extra):
    args = train.parse_args(["--data", str(tiny_prepared), "--out", str(tmp_path / "r"),
                             *tiny_flags, *extra])  # fmt: skip
    return run_setup.prepare_run(args)[1]


def test_weights_are_the_checkpoints(probe, tiny_prepared, tmp_path, tiny_flags):
    saved = load_checkpoint(probe)["model"]
    warm = _model(tiny_prepared, tmp_path, tiny_flags, "--init-from", str(probe)).state_dict()
    cold = _model(tiny_prepared, tmp_path, tiny_flags).state_dict()
    assert warm.keys() == saved.keys()
    for k in saved:
        assert torch.equal(warm[k], saved[k]), k
    # the probe's trained hash layers are not what a fresh model starts from (seed 0 vs 3)
    heads = [k for k in saved if ".head." in k or k.startswith(("image.head", "text.head"))]
    assert heads and any(not torch.equal(cold[k], saved[k]) for k in heads)


def test_fine_tune_from_probe_runs_and_records_it(probe, tiny_prepared, tmp_path, tiny_flags):
    out = tmp_path / "ft"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, "--epochs", "1",
            "--init-from", str(probe), "--no-progress"]  # fmt: skip
    assert train.main(argv) == 0
    assert json.loads((out / "args.json").read_text())["init_from"] == str(probe)
    assert "weights from" in (out / "train.log").read_text()
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # a new run: its own epoch count


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bits", "32", "--margin", "12"], "bits = 16, this run's has 32"),
        (["--pooling", "mean"], "pooling = 'cls', this run's has 'mean'"),
    ],
)
def test_other_model_refused(probe, tiny_prepared, tmp_path, tiny_flags, capsys, extra, message):
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *tiny_flags, *extra,
            "--init-from", str(probe), "--no-progress"]  # fmt: skip
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--init-from {probe}" in err and message in err


def test_missing_checkpoint_refused(tiny_prepared, tmp_path, tiny_flags, capsys):
    missing = tmp_path / "nope.pt"
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *tiny_flags,
            "--init-from", str(missing)]  # fmt: skip
    assert train.main(argv) == 2
    assert f"--init-from {missing}: no such checkpoint file" in capsys.readouterr().err
