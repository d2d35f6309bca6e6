"""--cuda-graphs (cmh/engine/graph_step.py): the static step equals the eager loop on the same batches.

On the CPU the step runs uncaptured on its static buffers (copies, text padding, warm-up and its
undoing all exercised); the captured CUDA graph is checked against the eager loop when a GPU is
present (the test is skipped otherwise)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from learning import assert_diverse

import train
from cmh.engine import run_setup
from cmh.engine.graph_step import StaticStep, static_epoch
from cmh.engine.loop import Run, batch_loss
from cmh.evaluation.encoding import pad_id

LENGTH = 64  # --max-length: above the longest caption, so batches differ in their longest


def _run(tiny_prepared, tmp_path, tiny_flags, *extra):
    args = train.parse_args(["--data", str(tiny_prepared), "--out", str(tmp_path / "r"),
                             *tiny_flags, "--image-cache", "--max-length", str(LENGTH),
                             *extra])  # fmt: skip
    data, model, tokenizer, cfg, optimizer, _ = run_setup.prepare_run(args)
    run = Run.create(args, data, tokenizer, cfg, torch.device("cpu"), tmp_path)
    return run, model, optimizer


def _batches(run, n: int) -> list[dict]:
    torch.manual_seed(7)  # the crops' draws
    loader = run.loader("train", train=True)
    loader.sampler.set_epoch(1)
    return [run.prepare_batch(b, train=True) for b, _ in zip(loader, range(n), strict=False)]


def _eager(run, model, optimizer, batches) -> list[float]:
    losses = []
    for b in batches:
        out = batch_loss(run, model, b)[0]
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    return losses


def _no_dropout(model) -> None:
    """Dropout off: padded text changes the masks' shape (and a graph draws them in another
    order), so with dropout the paths agree in distribution only."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


@pytest.fixture()
def setup(tiny_prepared, tmp_path, tiny_flags):
    run, model, optimizer = _run(tiny_prepared, tmp_path, tiny_flags)
    model.train()
    _no_dropout(model)
    batches = _batches(run, 3)
    lengths = {b["input_ids"].shape[1] for b in batches}
    assert len(lengths) > 1, "the batches should have captions of different longest lengths"
    return run, model, optimizer, batches


def _padded(batch: dict, length: int, pad: int) -> dict:
    """``batch`` with its text padded to ``length`` tokens (masked), as the static step pads."""
    out = dict(batch)
    extra = length - batch["input_ids"].shape[1]
    out["input_ids"] = torch.nn.functional.pad(batch["input_ids"], (0, extra), value=pad)
    out["attention_mask"] = torch.nn.functional.pad(batch["attention_mask"], (0, extra))
    return out


def _twins(run, model):
    twin = copy.deepcopy(model)
    return twin, run_setup.build_optimizer(run.args, twin)


def test_static_step_is_the_eager_step_exactly(setup):
    """Same batches, same padding: the static step's machinery (buffers, warm-up, its undoing)
    changes nothing, bit for bit, over several steps."""
    run, model, optimizer, batches = setup
    initial = copy.deepcopy(model.state_dict())
    twin, twin_opt = _twins(run, model)
    pad = pad_id(run.tokenizer)
    expected = _eager(run, twin, twin_opt, [_padded(b, LENGTH, pad) for b in batches])
    step = StaticStep(model, optimizer, lambda b: batch_loss(run, model, b)[0], batches[0],
                      text_length=LENGTH, pad_id=pad, capture=False)  # fmt: skip
    assert [float(step(b)["loss"]) for b in batches] == expected
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert any(not torch.equal(v, initial[k]) for k, v in model.state_dict().items())
    for a, b in zip(optimizer.state.values(), twin_opt.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_padding_to_the_static_length_is_masked(setup):
    """The loader pads to the batch's longest caption, the static step to a fixed length: the
    same codes to float rounding (the padding is masked out of attention)."""
    run, model, _, batches = setup
    pad = pad_id(run.tokenizer)
    with torch.no_grad():
        for b in batches:
            plain, padded = model(b)["text"], model(_padded(b, LENGTH, pad))["text"]
            assert b["input_ids"].shape[1] < LENGTH
            assert torch.allclose(plain, padded, atol=1e-5)


def test_the_warm_up_is_undone(setup):
    run, model, optimizer, batches = setup
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    StaticStep(model, optimizer, lambda b: batch_loss(run, model, b)[0], batches[0],
               text_length=LENGTH, capture=False, warmup=3)  # fmt: skip
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert optimizer.state, "the warm-up made Adam's state"
    for state in optimizer.state.values():  # ... and it is a fresh state again: zeros
        assert all(float(v.abs().sum()) == 0 for v in state.values() if torch.is_tensor(v))


def test_batches_of_another_size_or_longer_text_are_refused(setup):
    run, model, optimizer, batches = setup
    step = StaticStep(model, optimizer, lambda b: batch_loss(run, model, b)[0], batches[0],
                      text_length=LENGTH, capture=False, warmup=0)  # fmt: skip
    half = {k: v[:8] for k, v in batches[1].items()}
    with pytest.raises(ValueError, match="the same size|rows"):
        step(half)
    long = dict(batches[1])
    long["input_ids"] = torch.ones(16, LENGTH + 1, dtype=torch.long)
    with pytest.raises(ValueError, match=f"at most {LENGTH} tokens"):
        step(long)


def test_a_nonfinite_loss_names_its_step_and_items():
    values = [1.0, 2.0, float("nan"), 3.0]

    def step_for(batch):
        return lambda b: {"loss": torch.tensor(values[b["step"]]), "i2t": torch.tensor(0.5)}

    batches = [{"step": i, "index": torch.tensor([10 * i, 10 * i + 1])} for i in range(4)]
    with pytest.raises(FloatingPointError, match=r"epoch 5, step 2, batch item ids \[20, 21\]"):
        static_epoch(batches, step_for, epoch=5)
    means = static_epoch(batches[:2], step_for, epoch=1)
    assert means == {"loss": 1.5, "i2t": 0.5}


def _train(tiny_prepared, out, tiny_flags, *extra) -> list[dict]:
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, "--epochs", "2",
            "--image-cache", "--no-progress", *extra]  # fmt: skip
    assert train.main(argv) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.compares
@pytest.mark.slow
def test_train_py_with_cuda_graphs_and_resident_data_equals_eager(
    tiny_prepared, tmp_path, compare_flags
):
    eager = _train(tiny_prepared, tmp_path / "eager", compare_flags)
    assert_diverse(tmp_path / "eager")
    graphs = _train(tiny_prepared, tmp_path / "graphs", compare_flags, "--cuda-graphs")
    resident = _train(tiny_prepared, tmp_path / "res", compare_flags, "--resident-data")
    both = _train(tiny_prepared, tmp_path / "both", compare_flags, "--cuda-graphs", "--resident-data")
    keys = ("loss", "i2t", "t2i", "val_map_i2t", "val_map_t2i")
    # the resident batches are the loader's batches: the same numbers, bit for bit
    assert [[r[k] for k in keys] for r in resident] == [[r[k] for k in keys] for r in eager]
    assert [[r[k] for k in keys] for r in both] == [[r[k] for k in keys] for r in graphs]
    for a, b in zip(eager, graphs, strict=True):  # text padded to a fixed width: rounding only
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k
    logs = {n: (tmp_path / n / "train.log").read_text() for n in ("eager", "res", "both")}
    assert "the training split held on the device" in logs["res"] + logs["both"]
    assert "held on the device" not in logs["eager"]
    args = json.loads((tmp_path / "both" / "args.json").read_text())
    assert args["cuda_graphs"] and args["resident_data"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cuda-graphs", "--solver", "sgd"], "--cuda-graphs does not go with --solver sgd"),
        (["--cuda-graphs", "--objective", "dcmh"], "--cuda-graphs does not go with --objective"),
        (["--cuda-graphs", "--compile"], "--cuda-graphs does not go with --compile"),
        (["--cuda-graphs", "--lr-schedule", "linear"], "does not go with --lr-schedule linear"),
        (["--cuda-graphs", "--triplets", "hard"], "--cuda-graphs does not go with --triplets hard"),
        (["--resident-data", "--freeze-backbones"], "does not go with --freeze-backbones"),
        (["--resident-data", "--modalities", "text"], "a text-only run has no images"),
        (
            ["--resident-data", "--text-encoder", "bow"],
            "--resident-data does not go with --text-en",
        ),
        (["--cuda-graphs", "--batch-size", "64"], "fewer than one --batch-size 64"),
    ],
)
def test_refusals_name_the_flag(tiny_prepared, tmp_path, tiny_flags, capsys, extra, message):
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *tiny_flags,
            "--epochs", "1", "--no-progress", *extra]  # fmt: skip
    assert train.main(argv) == 2
    assert message in capsys.readouterr().err


def test_torchrun_is_refused():
    class Two:
        world = 2

    args = train.parse_args(["--demo", "--cuda-graphs"])
    with pytest.raises(train.UserError, match="--cuda-graphs runs in one process"):
        train.check_processes(args, Two())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA graph capture needs a GPU")
def test_captured_graph_equals_the_eager_loop_on_the_gpu(tiny_prepared, tmp_path, tiny_flags):
    run, model, optimizer = _run(tiny_prepared, tmp_path, tiny_flags, "--device", "cuda")
    run.device = torch.device("cuda")
    model.cuda().train()
    _no_dropout(model)
    batches = [{k: v.cuda() if k != "index" else v for k, v in b.items()} for b in _batches(run, 4)]
    twin, twin_opt = _twins(run, model)
    expected = _eager(run, twin, twin_opt, batches)
    step = StaticStep(model, optimizer, lambda b: batch_loss(run, model, b)[0], batches[0],
                      text_length=LENGTH, pad_id=pad_id(run.tokenizer))  # fmt: skip
    assert step.graph is not None
    got = [float(step(b)["loss"]) for b in batches]
    assert got == pytest.approx(expected, rel=1e-4)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-3)
