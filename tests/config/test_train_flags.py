"""Each training flag, passed through train.py, has its effect: a test per flag that fails if
train.py ignored it. Every run is one epoch of the tiny models on the 120-item generated dataset.

Two spies see what a run does: one on ``triplet_objective.hashing_loss`` (the arguments of every loss call,
the codes and the returned terms) and one on ``run_setup.build_model`` (the initial weights). With the
same seed every run starts from the same weights and sees the same first batch, so a flag's effect
on the first step is measured against the default run's, with nothing else changed.
"""

from __future__ import annotations

import copy
import inspect
import json
import math

import pytest
import torch
from conftest import skip_compile_if_forced_isa
from torch import nn

import loss
import train
from cmh.engine import run_setup
from cmh.models.hashers import load_model
from cmh.objectives import triplet as triplet_objective
from data import load_prepared

CPU = torch.device("cpu")


def run_train(prepared, out, *extra: str, device: str = "cpu") -> int:
    from conftest import TINY_FLAGS

    argv = ["--data", str(prepared), "--out", str(out), *TINY_FLAGS, "--epochs", "1"]
    return train.main([*argv, "--device", device, *extra])


def epochs(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def last_state(out) -> dict:
    return torch.load(out / "last.pt", weights_only=True)


def spy_on_training(monkeypatch) -> dict:
    """Record every call of triplet_objective.hashing_loss (all its arguments bound by name, defaults filled
    in, the codes and what it returned) and the initial state dict of run_setup.build_model's model."""
    seen: dict = {"calls": [], "initial": None}
    real_loss, real_build = triplet_objective.hashing_loss, run_setup.build_model
    signature = inspect.signature(loss.hashing_loss)

    def loss_spy(*args, **kwargs):
        out = real_loss(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        call = dict(bound.arguments)
        for key in ("image_codes", "text_codes", "labels"):
            call[key] = call[key].detach().clone()
        call["out"] = {k: float(v.detach()) for k, v in out.items()}
        seen["calls"].append(call)
        return out

    def build_spy(*args, **kwargs):
        model, tokenizer = real_build(*args, **kwargs)
        seen["initial"] = copy.deepcopy(model.state_dict())
        return model, tokenizer

    monkeypatch.setattr(triplet_objective, "hashing_loss", loss_spy)
    monkeypatch.setattr(run_setup, "build_model", build_spy)
    return seen


@pytest.fixture(scope="module")
def default_run(tiny_prepared, tmp_path_factory) -> dict:
    """One epoch with every flag at its default, seen by the spies; "out" is its run folder."""
    out = tmp_path_factory.mktemp("default")
    with pytest.MonkeyPatch.context() as mp:
        seen = spy_on_training(mp)
        assert run_train(tiny_prepared, out) == 0
    assert len(seen["calls"]) == 3  # 60 training items, batch 16, drop_last: 3 steps
    return {**seen, "out": out}


def same_first_batch(first: dict, base_first: dict, text: bool = True) -> None:
    """The first step of a run saw the default run's batch and (text=True) text codes too."""
    assert torch.equal(first["labels"], base_first["labels"])
    assert torch.equal(first["image_codes"], base_first["image_codes"])
    if text:
        assert torch.equal(first["text_codes"], base_first["text_codes"])


def some_captions(prepared, tokenizer, cfg, n: int = 4) -> dict:
    """Token ids and mask [n, L] of n training captions of different lengths (so some padding)."""
    data = load_prepared(prepared)
    captions = sorted(data.captions(data.splits["train"][:20]), key=len)
    picked = [captions[0], captions[len(captions) // 3], captions[-1], captions[1]][:n]
    enc = tokenizer(
        picked, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"
    )
    assert (enc["attention_mask"] == 0).any()  # padding present: a plain mean would differ
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# ----------------------------------------------------------------------------- loss flags


@pytest.mark.parametrize("mode", ["hard", "reference"])
def test_triplets_flag_picks_the_triplet_set(
    tiny_prepared, tmp_path, default_run, monkeypatch, mode
):
    """--triplets MODE reaches hashing_loss, and the loss trained on is MODE's, not "all"'s."""
    seen = spy_on_training(monkeypatch)
    assert run_train(tiny_prepared, tmp_path, "--triplets", mode) == 0
    calls, base_calls = seen["calls"], default_run["calls"]
    assert [c["triplets"] for c in calls] == [mode] * 3
    assert {c["triplets"] for c in base_calls} == {"all"}
    first, base_first = calls[0], base_calls[0]
    same_first_batch(first, base_first)  # same seed: only the triplet set differs at step 1
    codes = (first["image_codes"], first["text_codes"], first["labels"], first["margin"])
    by_mode = {m: float(loss.hashing_loss(*codes, triplets=m)["loss"]) for m in loss.TRIPLET_MODES}
    assert len({round(v, 4) for v in by_mode.values()}) == 3  # the three sets differ here
    assert first["out"]["loss"] == pytest.approx(by_mode[mode], rel=1e-6)
    assert base_first["out"]["loss"] == pytest.approx(by_mode["all"], rel=1e-6)
    # what metrics.jsonl reports is the mean of those calls, and it is not the default run's
    record, base = epochs(tmp_path)[0], epochs(default_run["out"])[0]
    assert record["loss"] == pytest.approx(sum(c["out"]["loss"] for c in calls) / 3, rel=1e-5)
    assert record["loss"] != pytest.approx(base["loss"], rel=1e-3)


def test_quant_weight_adds_the_weighted_quantization_term(
    tiny_prepared, tmp_path, default_run, monkeypatch
):
    """--quant-weight 0.5: metrics.jsonl's "quant" is the *weighted* term, 0.5 * mean((|h|-1)^2)
    over both modalities' codes (loss.py reports every part weighted), and "loss" is the four
    triplet terms plus it. At the default 0 the term is 0 and the loss is the four terms alone."""
    seen = spy_on_training(monkeypatch)
    assert run_train(tiny_prepared, tmp_path, "--quant-weight", "0.5") == 0
    calls = seen["calls"]
    assert [c["quant_weight"] for c in calls] == [0.5] * 3

    def raw_quant(call: dict) -> float:
        codes = torch.cat([call["image_codes"].reshape(-1), call["text_codes"].reshape(-1)])
        return float(((codes.float().abs() - 1) ** 2).mean())

    record = epochs(tmp_path)[0]
    assert record["quant"] > 0
    assert record["quant"] == pytest.approx(0.5 * sum(map(raw_quant, calls)) / 3, rel=1e-5)
    assert record["loss"] == pytest.approx(
        sum(record[t] for t in loss.TERMS) + record["quant"], rel=1e-6
    )
    # step 1 sees the default run's codes: its loss is the default's plus 0.5 * quant
    first, base_first = calls[0], default_run["calls"][0]
    same_first_batch(first, base_first)
    assert first["out"]["loss"] == pytest.approx(
        base_first["out"]["loss"] + 0.5 * raw_quant(first), rel=1e-6
    )
    base = epochs(default_run["out"])[0]
    assert {c["quant_weight"] for c in default_run["calls"]} == {0.0}
    assert base["quant"] == 0.0
    assert base["loss"] == pytest.approx(sum(base[t] for t in loss.TERMS), rel=1e-6)


# ----------------------------------------------------------------------------- model flags


def test_pooling_mean_pools_the_text_by_masked_mean(
    tiny_prepared, tmp_path, default_run, monkeypatch
):
    """--pooling mean: saved in the model config, and the text tower (rebuilt from last.pt) pools
    the encoder's last hidden state by a masked mean; the default tower takes [CLS]. The training
    forward pooled that way too: same first-step image codes as the default run, other text codes."""
    seen = spy_on_training(monkeypatch)
    assert run_train(tiny_prepared, tmp_path, "--pooling", "mean") == 0
    for out, pooling in ((tmp_path, "mean"), (default_run["out"], "cls")):
        state = last_state(out)
        assert state["model_config"]["pooling"] == pooling
        model, tokenizer, cfg = load_model(state, CPU)
        assert model.text.pooling == pooling
        model.eval()
        batch = some_captions(tiny_prepared, tokenizer, cfg)
        with torch.no_grad():
            hidden = model.text.encoder(**batch).last_hidden_state  # [B, L, hidden]
            features = model.text.features(batch["input_ids"], batch["attention_mask"])
        keep = batch["attention_mask"].bool()
        masked_mean = torch.stack([h[k].mean(0) for h, k in zip(hidden, keep, strict=True)])
        expected, other = (
            (masked_mean, hidden[:, 0]) if pooling == "mean" else (hidden[:, 0], masked_mean)
        )
        torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(features, other, atol=1e-3)
    first, base_first = seen["calls"][0], default_run["calls"][0]
    same_first_batch(first, base_first, text=False)
    assert not torch.allclose(first["text_codes"], base_first["text_codes"], atol=1e-4)


def test_freeze_image_backbone_keeps_backbone_and_batch_norm_statistics(
    tiny_prepared, tmp_path, default_run, monkeypatch
):
    """--freeze-image-backbone: every image backbone tensor of last.pt, batch-norm running
    statistics included (the backbone stays in eval mode), equals the initial one, while the image
    head and the text tower moved. The default run, from the same initial weights, moved all."""
    seen = spy_on_training(monkeypatch)
    assert run_train(tiny_prepared, tmp_path, "--freeze-image-backbone") == 0
    initial = seen["initial"]
    for k, v in default_run["initial"].items():  # same seed: the same starting point
        assert torch.equal(v, initial[k]), k
    state = last_state(tmp_path)
    assert state["model_config"]["freeze_image_backbone"] is True
    backbone = [k for k in initial if k.startswith("image.backbone.")]
    assert any(k.endswith("running_mean") for k in backbone)
    assert any(k.endswith("running_var") for k in backbone)
    assert any(k.endswith("num_batches_tracked") for k in backbone)

    def moved(weights: dict, prefix: str) -> list[str]:
        return [
            k for k in initial if k.startswith(prefix) and not torch.equal(weights[k], initial[k])
        ]

    assert moved(state["model"], "image.backbone.") == []
    head = [k for k in initial if k.startswith("image.head.")]
    assert moved(state["model"], "image.head.") == head
    assert any(k.startswith("text.encoder.") for k in moved(state["model"], "text."))
    base_moved = moved(last_state(default_run["out"])["model"], "image.backbone.")
    assert any(k.endswith("conv1.weight") for k in base_moved)
    assert any(k.endswith("running_mean") for k in base_moved)


def test_text_dropout_zero_removes_dropout_from_the_text_encoder(
    tiny_prepared, tmp_path, default_run, monkeypatch
):
    """--text-dropout 0: saved as 0.0; the rebuilt encoder's config and every Dropout module say
    0, so two training-mode forwards agree; the default (BERT's own 0.1) gives different ones."""
    seen = spy_on_training(monkeypatch)
    assert run_train(tiny_prepared, tmp_path, "--text-dropout", "0") == 0
    for out, saved, p in ((tmp_path, 0.0, 0.0), (default_run["out"], None, 0.1)):
        state = last_state(out)
        assert state["model_config"]["text_dropout"] == saved
        model, tokenizer, cfg = load_model(state, CPU)
        encoder = model.text.encoder
        assert encoder.config.hidden_dropout_prob == p
        assert encoder.config.attention_probs_dropout_prob == p
        dropouts = [m for m in encoder.modules() if isinstance(m, nn.Dropout)]
        assert len(dropouts) >= 1 + 3 * encoder.config.num_hidden_layers
        assert {m.p for m in dropouts} == {p}
        model.train()
        batch = some_captions(tiny_prepared, tokenizer, cfg)
        with torch.no_grad():
            a, b = (model.text(batch["input_ids"], batch["attention_mask"]) for _ in range(2))
        assert torch.equal(a, b) == (p == 0)
    first, base_first = seen["calls"][0], default_run["calls"][0]
    same_first_batch(first, base_first, text=False)
    assert not torch.equal(first["text_codes"], base_first["text_codes"])


# ----------------------------------------------------------------------------- hardware flags


@pytest.mark.slow  # ~20-40 s on 2 busy CPU cores: feature extraction, an eager and a compiled run
@skip_compile_if_forced_isa
def test_compile_compiles_the_training_forward_and_trains_the_same(
    tiny_prepared, tmp_path, monkeypatch
):
    """--compile (frozen-feature mode, so only the hash layers are compiled): torch.compile is
    called once, on the model, dynamo really captures and compiles a graph that the training steps
    run (none without the flag), and every loss term of both epochs and the final weights match
    the eager run's. Stronger than test_train.py's test, which an ignored --compile passes."""
    from torch._dynamo.utils import counters

    from models import CrossModalHasher

    flags = ["--freeze-backbones", "--feature-cache", str(tmp_path / "f"), "--epochs", "2"]
    compiled, real_compile = [], torch.compile

    def compile_spy(model, *args, **kwargs):
        compiled.append(model)
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_spy)
    torch._dynamo.reset()
    counters.clear()
    try:
        assert run_train(tiny_prepared, tmp_path / "eager", *flags) == 0
        assert compiled == [] and counters["frames"]["ok"] == 0
        assert run_train(tiny_prepared, tmp_path / "compiled", *flags, "--compile") == 0
        assert len(compiled) == 1 and isinstance(compiled[0], CrossModalHasher)
        assert counters["frames"]["ok"] >= 1
        assert counters["stats"]["unique_graphs"] >= 1
        assert counters["aot_autograd"]["ok"] >= 1  # a backward graph too: it trained compiled
    finally:
        torch._dynamo.reset()
        counters.clear()
    eager, comp = epochs(tmp_path / "eager"), epochs(tmp_path / "compiled")
    assert [r["epoch"] for r in comp] == [1, 2]
    for a, b in zip(eager, comp, strict=True):
        for term in (*loss.TERMS, "quant", "loss"):
            assert b[term] == pytest.approx(a[term], rel=1e-5, abs=1e-6), (a["epoch"], term)
    weights = last_state(tmp_path / "eager")["model"]
    for k, v in last_state(tmp_path / "compiled")["model"].items():
        torch.testing.assert_close(v, weights[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="--amp is bf16 autocast on CUDA only")
def test_amp_on_cuda_runs_in_bfloat16(tiny_prepared, tmp_path, monkeypatch):
    """--amp on CUDA: args.json says amp is on, the codes reaching the loss are bf16 (autocast was
    active), and the run completes with finite losses. (--amp on a CPU: test_silent_ignores.py.)"""
    seen = spy_on_training(monkeypatch)
    assert run_train(tiny_prepared, tmp_path, "--amp", device="cuda") == 0
    saved = json.loads((tmp_path / "args.json").read_text())
    assert saved["amp"] is True and saved["amp_requested"] is True
    assert {c["image_codes"].dtype for c in seen["calls"]} == {torch.bfloat16}
    assert {c["image_codes"].device.type for c in seen["calls"]} == {"cuda"}
    record = epochs(tmp_path)[0]
    assert math.isfinite(record["loss"]) and record["loss"] > 0
    assert (tmp_path / "results.json").is_file()
