"""The objective registry: an objective registered from outside the package (this file) trains
through train.main with no edit to train.py, the loop or the argument checks; --help lists the
registered names; an unknown name is refused with the closest ones."""

from __future__ import annotations

import json

import pytest
import torch

import train
from cmh.objectives import (
    Objective,
    get_objective,
    objective_names,
    register_objective,
    unregister_objective,
)
from cmh.utils.errors import UserError

TOY = "toy-pairs"


def toy_flags(add) -> None:
    add("--toy-weight", type=float, default=1.0, help="weight of the pair term")


def toy_check(args) -> None:
    if args.toy_weight <= 0:
        raise UserError(f"--toy-weight must be > 0, got {args.toy_weight}")


def toy_loss(args, terms):
    """Pull each image code towards its own caption's code: weight * mean ||h_i - h_t||^2."""

    def loss_fn(image_codes, text_codes, labels):
        pair = args.toy_weight * ((image_codes - text_codes) ** 2).sum(1).mean()
        return {"pair": pair, "loss": pair}

    return loss_fn


class Counter:
    """Per-run state: how many runs built it (saved in last.pt under the objective's name)."""

    def __init__(self):
        self.made = torch.tensor(1)

    def state_dict(self):
        return {"made": self.made}

    def load_state_dict(self, state):
        self.made = state["made"] + 1


@pytest.fixture
def toy():
    objective = Objective(
        name=TOY,
        summary="a toy: image and caption codes of a pair pulled together",
        add_flags=toy_flags,
        check=toy_check,
        refuses={"cuda_graphs": "a toy"},
        loss=toy_loss,
        new_state=lambda run, model: Counter(),
    )
    register_objective(objective)
    yield objective
    unregister_objective(TOY)


def test_a_toy_objective_trains_through_train_main(toy, tiny_prepared, tiny_flags, tmp_path):
    out = tmp_path / "toy"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, "--epochs", "2",
            "--objective", TOY, "--toy-weight", "0.5"]  # fmt: skip
    assert train.main(argv) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["pair"] > 0 and r["loss"] == r["pair"] for r in records)  # its own terms
    assert "i2t" not in records[0]  # not the triplet loss
    assert json.loads((out / "args.json").read_text())["toy_weight"] == 0.5
    assert "map_i2t" in json.loads((out / "results.json").read_text())
    last = torch.load(out / "last.pt", weights_only=True)
    assert int(last[TOY]["made"]) == 1  # its per-run state rides in the checkpoint
    assert TOY not in torch.load(out / "best.pt", weights_only=True)
    assert train.main(["--out", str(out), "--resume", "--epochs", "3"]) == 0
    assert int(torch.load(out / "last.pt", weights_only=True)[TOY]["made"]) == 2  # restored


def test_its_refusals_come_from_the_objective(toy, tiny_prepared, tiny_flags, tmp_path, capsys):
    base = ["--data", str(tiny_prepared), *tiny_flags, "--objective", TOY]
    assert train.main([*base, "--out", str(tmp_path / "a"), "--toy-weight", "0"]) == 2
    assert "--toy-weight must be > 0, got 0.0" in capsys.readouterr().err
    assert train.main([*base, "--out", str(tmp_path / "b"), "--cuda-graphs"]) == 2
    assert f"--cuda-graphs does not go with --objective {TOY} (a toy)" in capsys.readouterr().err


def test_help_lists_every_registered_objective_and_its_flags(toy, capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name in ("triplet", "dcmh", TOY):
        assert f"{name}: " in shown
    assert f"objective {TOY}: --toy-weight" in shown
    assert "--recipe {default,dcmh,seed}" in shown


def test_an_unknown_objective_is_refused_with_the_closest_names(capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--demo", "--objective", "tripplet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'tripplet' is not registered (did you mean triplet?)" in err
    with pytest.raises(UserError, match="did you mean dcmh"):
        get_objective("dcm")


def test_the_builtin_objectives_register_themselves():
    assert {"triplet", "dcmh"} <= set(objective_names())
    assert get_objective("dcmh").head_activation == "none"
    assert get_objective("triplet").head_activation == "tanh"
    with pytest.raises(ValueError, match="registered already"):
        register_objective(get_objective("triplet"))


def test_the_model_is_built_once_per_run(monkeypatch, tiny_prepared, tiny_flags, tmp_path):
    """Training and the final evaluation use one model: best.pt's weights are loaded into it."""
    from cmh.models import hashers

    calls = []
    real = hashers.build_model

    def counting(*args, **kwargs):
        calls.append(kwargs.get("pretrained", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashers, "build_model", counting)
    from cmh.engine import run_setup

    monkeypatch.setattr(run_setup, "build_model", counting)
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *tiny_flags, "--epochs", "1"]
    assert train.main(argv) == 0
    assert calls == [True]
