"""cmh/objectives/dcmh_loss.py against a brute-force double loop over (i, j) and hand-made cases."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from cmh.engine.schedules import lr_schedule
from cmh.objectives.dcmh_loss import (
    DcmhState,
    dcmh_loss,
    epoch_batches,
    similarity_rows,
)

# (b, n, bits, rows cover all n)
SIZES = [(1, 1, 1, True), (1, 4, 3, False), (3, 5, 4, False), (8, 20, 16, False), (6, 6, 8, True)]


def _label_sets(n: int, rng: np.random.Generator, n_labels: int = 6) -> list[set[int]]:
    """Random label sets of 0-3 labels each (an empty set: similar to nobody)."""
    return [
        set(rng.choice(n_labels, size=rng.integers(0, 4), replace=False).tolist()) for _ in range(n)
    ]


def _multi_hot(label_sets: list[set[int]], n_labels: int = 6) -> torch.Tensor:
    out = torch.zeros(len(label_sets), n_labels)
    for i, labels in enumerate(label_sets):
        for k in labels:
            out[i, k] = 1.0
    return out


def _problem(b: int, n: int, bits: int, all_rows: bool, seed: int, scale: float = 1.0) -> dict:
    """A random float64 problem: outputs, distinct rows, buffers, ±1 codes, similarity rows."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = torch.randperm(n, generator=gen)[: n if all_rows else b]
    assert rows.numel() == b
    label_sets = _label_sets(n, rng)
    sim = torch.tensor(
        [[float(bool(label_sets[int(r)] & label_sets[j])) for j in range(n)] for r in rows],
        dtype=torch.float64,
    ).reshape(b, n)
    randn = lambda *shape: scale * torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    return {
        "out": randn(b, bits),
        "rows": rows,
        "own": randn(n, bits),
        "other": randn(n, bits),
        "codes": torch.where(torch.randn(n, bits, generator=gen) >= 0, 1.0, -1.0).double(),
        "similarity": sim,
    }


def _brute_force(p: dict, gamma: float, eta: float) -> dict[str, torch.Tensor]:
    """Raw sums straight from the definitions, with explicit loops over (i, j) and bits."""
    out, rows, own, other, codes, sim = (
        p[k] for k in ("out", "rows", "own", "other", "codes", "similarity")
    )
    b, bits = out.shape
    n = own.shape[0]
    loglik = out.sum() * 0.0
    for i in range(b):
        for j in range(n):
            theta = 0.5 * sum(out[i, k] * other[j, k] for k in range(bits))
            loglik = loglik + torch.log1p(torch.exp(theta)) - sim[i, j] * theta
    quant = out.sum() * 0.0
    for i in range(b):
        for k in range(bits):
            quant = quant + (codes[int(rows[i]), k] - out[i, k]) ** 2
    in_batch = {int(r) for r in rows}
    balance = out.sum() * 0.0
    for k in range(bits):
        column = sum(out[i, k] for i in range(b)) + sum(
            own[j, k] for j in range(n) if j not in in_batch
        )
        balance = balance + column**2
    total = (loglik + gamma * quant + eta * balance) / (b * n)
    return {"loglik": loglik, "quant": quant, "balance": balance, "loss": total}


@pytest.mark.parametrize(("b", "n", "bits", "all_rows"), SIZES)
@pytest.mark.parametrize(("gamma", "eta"), [(1.0, 1.0), (0.7, 2.5)])
def test_matches_brute_force(
    b: int, n: int, bits: int, all_rows: bool, gamma: float, eta: float
) -> None:
    problem = _problem(b, n, bits, all_rows, seed=b * 100 + n)
    out1 = problem["out"].clone().requires_grad_()
    parts = dcmh_loss(**{**problem, "out": out1}, gamma=gamma, eta=eta)
    parts["loss"].backward()
    out2 = problem["out"].clone().requires_grad_()
    ref = _brute_force({**problem, "out": out2}, gamma, eta)
    ref["loss"].backward()
    bn = b * n
    expected = {
        "loglik": ref["loglik"] / bn,
        "quant": gamma * ref["quant"] / bn,
        "balance": eta * ref["balance"] / bn,
        "loss": ref["loss"],
    }
    for name, value in expected.items():
        assert parts[name].dtype == torch.float64 and parts[name].dim() == 0
        assert parts[name].item() == pytest.approx(value.item(), abs=1e-10, rel=0), name
    total = parts["loglik"] + parts["quant"] + parts["balance"]
    assert parts["loss"].item() == pytest.approx(total.item(), abs=1e-12, rel=0)
    torch.testing.assert_close(out1.grad, out2.grad, atol=1e-10, rtol=0)


def test_large_theta_is_finite() -> None:
    """Outputs ~1e3 put |theta| ~1e6, where log(1 + exp(theta)) overflows even in float64."""
    problem = _problem(8, 20, 16, False, seed=11, scale=1e3)
    theta = 0.5 * problem["out"] @ problem["other"].T
    assert torch.isinf(torch.log1p(torch.exp(theta))).any()  # the naive formula fails here
    out = problem["out"].float().requires_grad_()
    buffers = {k: v.float() for k, v in problem.items() if k not in ("out", "rows")}
    parts = dcmh_loss(out, problem["rows"], **buffers)
    assert all(torch.isfinite(v) for v in parts.values())
    parts["loss"].backward()
    assert torch.isfinite(out.grad).all()
    # where theta is huge, softplus(theta) - S theta is relu(theta) - S theta: compare in float64
    exact = (theta.clamp_min(0) - problem["similarity"] * theta).sum() / (8 * 20)
    assert parts["loglik"].item() == pytest.approx(exact.item(), rel=1e-5)


def test_balance_with_all_rows_ignores_own() -> None:
    """When the batch covers all n rows, balance = sum((out.sum(0))^2) and own plays no part."""
    problem = _problem(6, 6, 8, True, seed=3)
    parts = dcmh_loss(**problem)
    expected = (problem["out"].sum(0) ** 2).sum() / 36
    assert parts["balance"].item() == pytest.approx(expected.item(), abs=1e-12)
    changed = dcmh_loss(**{**problem, "own": problem["own"] + 5.0})
    assert changed["balance"].item() == parts["balance"].item()


def test_balance_with_a_subset_uses_only_rows_outside_the_batch() -> None:
    problem = _problem(3, 10, 4, False, seed=4)
    rows, own = problem["rows"], problem["own"]
    outside = torch.tensor([j for j in range(10) if j not in set(rows.tolist())])
    expected = ((problem["out"].sum(0) + own[outside].sum(0)) ** 2).sum() / 30
    parts = dcmh_loss(**problem)
    assert parts["balance"].item() == pytest.approx(expected.item(), abs=1e-12)
    at_batch = own.clone()
    at_batch[rows] += 100.0  # the batch's own stale rows are replaced by out: no effect
    assert dcmh_loss(**{**problem, "own": at_batch})["balance"].item() == parts["balance"].item()
    elsewhere = own.clone()
    elsewhere[outside[0]] += 100.0
    assert dcmh_loss(**{**problem, "own": elsewhere})["balance"].item() > parts["balance"].item()


def test_only_out_gets_a_gradient() -> None:
    problem = _problem(4, 9, 5, False, seed=5)
    tensors = {k: v.clone().requires_grad_() for k, v in problem.items() if k != "rows"}
    dcmh_loss(rows=problem["rows"], **tensors)["loss"].backward()
    assert tensors["out"].grad is not None and tensors["out"].grad.abs().sum() > 0
    for name in ("own", "other", "codes", "similarity"):
        assert tensors[name].grad is None, name


def test_float32_under_autocast() -> None:
    problem = _problem(4, 9, 5, False, seed=6)
    exact = dcmh_loss(**problem)["loss"].item()
    out = problem["out"].float().requires_grad_()
    buffers = {k: v.float() for k, v in problem.items() if k not in ("out", "rows")}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = dcmh_loss(out.bfloat16(), problem["rows"], **buffers)
    assert all(v.dtype == torch.float32 for v in parts.values())
    assert parts["loss"].item() == pytest.approx(exact, rel=0.02)
    parts["loss"].backward()
    assert torch.isfinite(out.grad).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": torch.tensor([0, 2, 2, 5])}, "repeat"),
        ({"rows": torch.tensor([0, 1, 2, 9])}, "indices"),
        ({"rows": torch.tensor([0, 1, 2])}, "rows"),
        ({"other": torch.zeros(9, 4, dtype=torch.float64)}, "other"),
        ({"codes": torch.zeros(8, 5, dtype=torch.float64)}, "codes"),
        ({"similarity": torch.zeros(4, 8, dtype=torch.float64)}, "similarity"),
        ({"out": torch.zeros(4, 5, dtype=torch.long)}, "out"),
    ],
)
def test_bad_arguments_raise(change: dict, message: str) -> None:
    problem = _problem(4, 9, 5, False, seed=7)
    with pytest.raises(ValueError, match=message):
        dcmh_loss(**{**problem, **change})


def test_similarity_rows_matches_brute_force() -> None:
    rng = np.random.default_rng(8)
    train_sets = _label_sets(15, rng)
    train_sets[2] = set()  # an unlabelled item is similar to nobody, itself included
    batch = [0, 2, 7, 7, 14]
    train = _multi_hot(train_sets)
    for labels in (train, train.bool(), train.long(), train.to(torch.uint8)):
        sim = similarity_rows(labels[batch], labels)
        assert sim.dtype == torch.float32 and sim.shape == (5, 15)
        for i, r in enumerate(batch):
            for j in range(15):
                assert sim[i, j].item() == float(bool(train_sets[r] & train_sets[j]))
    assert sim[1].sum() == 0
    with pytest.raises(ValueError, match="labels"):
        similarity_rows(train[:, :3], train)


def test_state_init_is_standard_normal_from_the_seed() -> None:
    state = DcmhState(50, 8, 123)
    gen = torch.Generator().manual_seed(123)
    f, g = torch.randn(50, 8, generator=gen), torch.randn(50, 8, generator=gen)
    assert torch.equal(state.F, f) and torch.equal(state.G, g)
    assert state.F.dtype == state.G.dtype == state.B.dtype == torch.float32
    assert torch.equal(state.B, torch.where(f + g >= 0, 1.0, -1.0))
    again = DcmhState(50, 8, torch.Generator().manual_seed(123))
    assert torch.equal(again.F, state.F) and torch.equal(again.B, state.B)


def test_state_update_writes_only_the_given_rows() -> None:
    state = DcmhState(10, 4, 0)
    before = {k: v.clone() for k, v in state.state_dict().items() if k != "single_modality"}
    rows = torch.tensor([7, 1, 4])
    out = torch.arange(12, dtype=torch.float64).reshape(3, 4).requires_grad_()
    state.update("image", rows, out * 2)
    expected = before["F"].clone()
    expected[rows] = (out * 2).detach().float()
    assert torch.equal(state.F, expected) and not state.F.requires_grad
    assert torch.equal(state.G, before["G"]) and torch.equal(state.B, before["B"])
    state.update("text", rows, -out)
    assert torch.equal(state.G[rows], -out.detach().float())
    untouched = torch.tensor([j for j in range(10) if j not in (7, 1, 4)])
    assert torch.equal(state.G[untouched], before["G"][untouched])
    own, other = state.buffers("text")
    assert own is state.G and other is state.F
    with pytest.raises(ValueError, match="out"):
        state.update("image", rows, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="modality"):
        state.update("audio", rows, out)


def test_update_codes_is_sign_without_zeros() -> None:
    state = DcmhState(6, 3, 1)
    state.F.copy_(torch.tensor([[1.0, -2.0, 0.0]] * 6))
    state.G.copy_(torch.tensor([[-1.0, 1.0, 0.0]] * 6))  # F + G = [0, -1, 0]
    state.update_codes()
    assert torch.equal(state.B, torch.tensor([[1.0, -1.0, 1.0]] * 6))
    state.G.normal_()
    state.update_codes()
    assert set(state.B.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(state.B, torch.where(state.F + state.G >= 0, 1.0, -1.0))


@pytest.mark.parametrize("single", [False, True])
def test_state_dict_round_trip_is_exact(single: bool) -> None:
    state = DcmhState(12, 5, 2, single_modality=single)
    state.update("text", torch.tensor([3, 0]), torch.randn(2, 5))
    state.update_codes()
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    restored = DcmhState(12, 5, 99, single_modality=single)
    restored.load_state_dict(saved)
    names = ("G", "B") if single else ("F", "G", "B")
    for name in names:
        assert torch.equal(getattr(restored, name), getattr(state, name)), name
    assert set(saved) == {*names, "single_modality"}
    with pytest.raises(ValueError, match="single_modality"):
        DcmhState(12, 5, 0, single_modality=not single).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"state_dict\['"):
        DcmhState(12, 6, 0, single_modality=single).load_state_dict(saved)


def test_single_modality_uses_the_text_buffer_twice() -> None:
    state = DcmhState(8, 4, 3, single_modality=True)
    assert state.F is None
    assert torch.equal(state.G, torch.randn(8, 4, generator=torch.Generator().manual_seed(3)))
    own, other = state.buffers("text")
    assert own is state.G and other is state.G
    assert torch.equal(state.B, torch.where(state.G >= 0, 1.0, -1.0))
    with pytest.raises(ValueError, match="modality"):
        state.buffers("image")


def test_lr_schedule_endpoints_and_monotone() -> None:
    epochs = 500
    rates = [lr_schedule(e, epochs) for e in range(epochs)]
    assert rates[0] == 10**-1.5 and rates[-1] == 1e-6
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    np.testing.assert_allclose(rates, np.linspace(10**-1.5, 1e-6, epochs), rtol=1e-12)
    assert lr_schedule(0, 1) == 10**-1.5
    assert [lr_schedule(e, 2, 1.0, 0.5) for e in range(2)] == [1.0, 0.5]
    for bad in (-1, epochs):
        with pytest.raises(ValueError, match="epoch"):
            lr_schedule(bad, epochs)


@pytest.mark.parametrize(("n", "batch"), [(10, 3), (128, 128), (1000, 128), (5, 1)])
def test_epoch_batches_unique_count_and_seeded(n: int, batch: int) -> None:
    batches = epoch_batches(n, batch, torch.Generator().manual_seed(5))
    assert len(batches) == n // batch
    assert all(b.dtype == torch.long and b.shape == (batch,) for b in batches)
    rows = torch.cat(batches)
    assert rows.unique().numel() == rows.numel() == batch * (n // batch)
    assert rows.min() >= 0 and rows.max() < n
    again = epoch_batches(n, batch, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    if n > 1:  # another seed gives another order
        other = epoch_batches(n, batch, torch.Generator().manual_seed(6))
        assert not all(torch.equal(a, b) for a, b in zip(batches, other, strict=True))


def test_epoch_batches_rejects_bad_sizes() -> None:
    for n, batch in ((5, 0), (5, 6)):
        with pytest.raises(ValueError, match="batch"):
            epoch_batches(n, batch, torch.Generator().manual_seed(0))
