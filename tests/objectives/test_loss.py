"""loss.py against a brute-force enumeration (tests/loss_bruteforce.py) and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loss_bruteforce import (
    brute_force_loss,
    enumerate_triplets,
    iapr_label_sets,
    multi_hot,
    zipf_label_sets,
)

from loss import TERMS, hashing_loss, label_similarity, reference_triplet_weights

MODES = ("all", "hard", "reference")
MARGIN = 4.0  # with 16-bit tanh(2 z) codes, roughly half the hinges are active


def _codes(n_items: int, seed: int, bits: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 tanh codes [n_items, bits] for both modalities."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.tanh(2.0 * torch.randn(n_items, bits, generator=gen, dtype=torch.float64))
    text = torch.tanh(2.0 * torch.randn(n_items, bits, generator=gen, dtype=torch.float64))
    return image, text


def _label_sets(source: str, n_items: int, seed: int) -> list[set[int]]:
    rng = np.random.default_rng(seed)
    if source == "zipf":
        return zipf_label_sets(n_items, rng)
    sets = iapr_label_sets(n_items, rng)
    if sets is None:
        pytest.skip("IAPR TC-12 metadata not present")
    return sets


def _grad(x: torch.Tensor) -> torch.Tensor:
    return x.grad if x.grad is not None else torch.zeros_like(x)


def _compare(image, text, label_sets, mode, terms, margin=MARGIN, labels=None) -> torch.Tensor:
    """Assert vectorised == brute force in value and gradient (1e-10); return the loss."""
    labels = multi_hot(label_sets) if labels is None else labels
    i1, t1 = image.clone().requires_grad_(), text.clone().requires_grad_()
    out = hashing_loss(i1, t1, labels, margin, triplets=mode, terms=terms)
    out["loss"].backward()
    i2, t2 = image.clone().requires_grad_(), text.clone().requires_grad_()
    ref = brute_force_loss(i2, t2, label_sets, margin, mode, terms)
    ref.backward()
    assert out["loss"].item() == pytest.approx(ref.item(), abs=1e-10, rel=0)
    torch.testing.assert_close(_grad(i1), _grad(i2), atol=1e-10, rtol=0)
    torch.testing.assert_close(_grad(t1), _grad(t2), atol=1e-10, rtol=0)
    return out["loss"].detach()


@pytest.mark.parametrize("source", ["zipf", "iapr"])
@pytest.mark.parametrize("n_items", [2, 8, 32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("term", TERMS)
def test_matches_brute_force(source: str, n_items: int, mode: str, term: str) -> None:
    label_sets = _label_sets(source, n_items, seed=n_items)
    image, text = _codes(n_items, seed=n_items)
    loss = _compare(image, text, label_sets, mode, (term,))
    if n_items == 32:  # realistic batches always have triplets, so the check is not vacuous
        assert loss > 0


@pytest.mark.parametrize("mode", MODES)
def test_total_of_all_terms_matches_brute_force(mode: str) -> None:
    label_sets = _label_sets("zipf", 16, seed=3)
    image, text = _codes(16, seed=3)
    _compare(image, text, label_sets, mode, TERMS)


def test_reference_weights_match_enumeration() -> None:
    label_sets = _label_sets("zipf", 12, seed=5) + [set()]  # plus an unlabelled item
    weights = reference_triplet_weights(label_similarity(multi_hot(label_sets)))
    expected = torch.zeros_like(weights)
    for (a, p, n), count in enumerate_triplets(label_sets, "reference", True).items():
        expected[a, p, n] = count
    torch.testing.assert_close(weights, expected, atol=0, rtol=0)


def _assert_zero_with_grad(image, text, labels, mode) -> None:
    image, text = image.clone().requires_grad_(), text.clone().requires_grad_()
    out = hashing_loss(image, text, labels, MARGIN, triplets=mode)
    assert out["loss"].requires_grad and out["loss"].item() == 0.0
    out["loss"].backward()
    assert torch.all(image.grad == 0) and torch.all(text.grad == 0)


@pytest.mark.parametrize("mode", MODES)
def test_batch_of_one(mode: str) -> None:
    image, text = _codes(1, seed=0)
    _assert_zero_with_grad(image, text, torch.ones(1, 3), mode)  # positive only: itself
    _compare(image, text, [{0, 2}], mode, TERMS)


@pytest.mark.parametrize("mode", MODES)
def test_everyone_shares_a_label_gives_zero(mode: str) -> None:
    label_sets = [{0} | s for s in _label_sets("zipf", 8, seed=1)]
    image, text = _codes(8, seed=1)
    _assert_zero_with_grad(image, text, multi_hot(label_sets), mode)


@pytest.mark.parametrize("mode", MODES)
def test_nobody_shares_a_label(mode: str) -> None:
    """Only cross-modal terms in "all"/"hard" have triplets (p = a, the item's own caption)."""
    label_sets = [{i} for i in range(6)]
    image, text = _codes(6, seed=2)
    for term in TERMS:
        loss = _compare(image, text, label_sets, mode, (term,))
        has_triplets = mode != "reference" and term in ("i2t", "t2i")
        assert (loss > 0) == has_triplets


@pytest.mark.parametrize("mode", MODES)
def test_unlabelled_item_matches_brute_force(mode: str) -> None:
    label_sets = _label_sets("zipf", 8, seed=4)
    label_sets[3] = set()
    image, text = _codes(8, seed=4)
    _compare(image, text, label_sets, mode, TERMS)


def test_unlabelled_item_hand_computed() -> None:
    """Items 0, 1 share label 0; item 2 has no label: never a positive, a negative for all."""
    labels = torch.tensor([[1, 0], [1, 0], [0, 0]])
    image = torch.tensor([[0.0], [0.5], [0.8]], dtype=torch.float64)
    text = torch.tensor([[0.1], [-0.3], [0.2]], dtype=torch.float64)
    out = hashing_loss(image, text, labels, 1.0)

    def hinge(a: float, p: float, n: float) -> float:
        return max(0.0, 1.0 + (a - p) ** 2 - (a - n) ** 2)

    i, t = image[:, 0].tolist(), text[:, 0].tolist()
    # i2i: (0, 1, 2), (1, 0, 2); anchor 2 has no positive.
    assert out["i2i"].item() == pytest.approx(
        (hinge(i[0], i[1], i[2]) + hinge(i[1], i[0], i[2])) / 2
    )
    # i2t: anchors 0 and 1 each with p in {0, 1} (own caption included) and n = 2.
    i2t = [hinge(i[a], t[p], t[2]) for a in (0, 1) for p in (0, 1)]
    assert out["i2t"].item() == pytest.approx(sum(i2t) / 4)
    assert out["loss"].item() == pytest.approx(sum(out[k].item() for k in (*TERMS, "quant")))


def test_label_dtypes_agree() -> None:
    label_sets = _label_sets("zipf", 8, seed=6)
    image, text = _codes(8, seed=6)
    as_float = multi_hot(label_sets)
    results = [
        hashing_loss(image, text, lab, MARGIN)["loss"]
        for lab in (as_float, as_float.bool(), as_float.long(), as_float.to(torch.uint8))
    ]
    assert all(r.item() == results[0].item() for r in results)


def test_quant_term_is_weighted_and_added() -> None:
    label_sets = _label_sets("zipf", 8, seed=7)
    image, text = _codes(8, seed=7)
    labels = multi_hot(label_sets)
    plain = hashing_loss(image, text, labels, MARGIN)
    assert plain["quant"].item() == 0.0
    out = hashing_loss(image, text, labels, MARGIN, quant_weight=0.5)
    both = torch.cat([image, text])
    expected = 0.5 * ((both.abs() - 1) ** 2).mean()
    assert out["quant"].item() == pytest.approx(expected.item(), abs=1e-12)
    assert out["loss"].item() == pytest.approx(plain["loss"].item() + expected.item(), abs=1e-12)
    text_only = hashing_loss(None, text, labels, MARGIN, quant_weight=2.0, terms=("t2t",))
    assert text_only["quant"].item() == pytest.approx(2.0 * ((text.abs() - 1) ** 2).mean().item())


def test_terms_subset_and_missing_modality() -> None:
    label_sets = _label_sets("zipf", 8, seed=8)
    image, text = _codes(8, seed=8)
    labels = multi_hot(label_sets)
    full = hashing_loss(image, text, labels, MARGIN)
    text_only = hashing_loss(None, text, labels, MARGIN, terms=("t2t",))
    image_only = hashing_loss(image, None, labels, MARGIN, terms=["i2i"])
    assert set(text_only) == {*TERMS, "quant", "loss"}
    assert text_only["loss"].item() == full["t2t"].item() == text_only["t2t"].item()
    assert image_only["loss"].item() == full["i2i"].item()
    assert all(text_only[t].item() == 0.0 for t in ("i2t", "t2i", "i2i"))
    assert full["loss"].item() == pytest.approx(sum(full[t].item() for t in TERMS), abs=1e-12)
    weighted = hashing_loss(image, text, labels, MARGIN, weights={"i2t": 2.0})
    assert weighted["i2t"].item() == pytest.approx(2.0 * full["i2t"].item())
    assert weighted["loss"].item() == pytest.approx(full["loss"].item() + full["i2t"].item())


def test_float32_autocast_and_device_dtype() -> None:
    label_sets = _label_sets("zipf", 16, seed=9)
    image, text = _codes(16, seed=9)
    labels = multi_hot(label_sets)
    exact = hashing_loss(image, text, labels, MARGIN)["loss"].item()
    image32, text32 = image.float().requires_grad_(), text.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hashing_loss(image32.bfloat16(), text32.bfloat16(), labels, MARGIN)
    assert out["loss"].dtype == torch.float32
    assert out["loss"].item() == pytest.approx(exact, rel=0.05)
    out["loss"].backward()
    assert image32.grad is not None and torch.isfinite(image32.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"terms": ("i2t", "x2y")}, "terms"),
        ({"terms": "t2t"}, "terms"),
        ({"terms": ()}, "terms"),
        ({"terms": ("t2t", "t2t")}, "terms"),
        ({"triplets": "semi-hard"}, "triplets"),
        ({"margin": -0.1}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"quant_weight": -1.0}, "quant_weight"),
        ({"weights": {"i2t": -1.0}}, "weights"),
        ({"weights": {"i2i": 1.0}, "terms": ("t2t",)}, "weights"),
        ({"image_codes": None}, "image_codes"),
        ({"text_codes": torch.zeros(4, 8)}, "differ"),
        ({"text_codes": torch.zeros(3, 16)}, "rows"),
        ({"image_codes": torch.zeros(4, 16, dtype=torch.long)}, "float tensor"),
        ({"labels": torch.ones(4)}, "labels"),
        ({"labels": torch.ones(5, 3)}, "rows"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    args = {
        "image_codes": torch.zeros(4, 16),
        "text_codes": torch.zeros(4, 16),
        "labels": torch.ones(4, 3),
        "margin": 1.0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        hashing_loss(**args)
