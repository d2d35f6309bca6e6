"""Brute-force reference for loss.py, and realistic multi-label fixtures.

The reference enumerates triplets with explicit Python loops over items, straight from the
definitions in loss.py's docstrings, then evaluates each listed triplet with direct differences
(no masks, no matmul distances). It is slow on purpose: keep it obviously correct. Used by
tests/objectives/test_loss.py and bench/bench_loss.py (the only copy).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

# the real IAPR TC-12 labels, beside the checkout (../shared) or where IAPR_TC12_META points
IAPR_ITEMS = (
    Path(
        os.environ.get(
            "IAPR_TC12_META", Path(__file__).resolve().parents[2] / "shared/iapr-tc12-meta"
        )
    )
    / "items.jsonl"
)
CROSS_MODAL = {"i2t": True, "t2i": True, "i2i": False, "t2t": False}


def zipf_label_sets(n_items: int, rng: np.random.Generator, n_labels: int = 30) -> list[set[int]]:
    """Label sets with Zipf-like label frequencies (p(k) ~ 1/(k+1)) and 1-6 labels per item."""
    probs = 1.0 / np.arange(1, n_labels + 1)
    probs /= probs.sum()
    sizes = np.minimum(1 + rng.poisson(2.0, size=n_items), 6)
    return [set(rng.choice(n_labels, size=k, replace=False, p=probs).tolist()) for k in sizes]


@lru_cache(maxsize=1)
def _iapr_label_sets() -> tuple[frozenset[str], ...]:
    with IAPR_ITEMS.open(encoding="utf-8") as f:
        return tuple(frozenset(json.loads(line)["segment_labels"]) for line in f)


def iapr_label_sets(n_items: int, rng: np.random.Generator) -> list[set[int]] | None:
    """Label sets of n_items random IAPR TC-12 items (SAIAPR segment labels), or None if absent."""
    if not IAPR_ITEMS.is_file():
        return None
    all_sets = _iapr_label_sets()
    names = sorted(set().union(*all_sets))
    index = {name: i for i, name in enumerate(names)}
    picks = rng.choice(len(all_sets), size=n_items, replace=False)
    return [{index[name] for name in all_sets[i]} for i in picks]


def multi_hot(label_sets: list[set[int]], n_labels: int | None = None) -> torch.Tensor:
    """[B, C] float multi-hot matrix of the label sets (C = n_labels or 1 + largest label)."""
    if n_labels is None:
        n_labels = 1 + max((max(s) for s in label_sets if s), default=0)
    out = torch.zeros(len(label_sets), n_labels)
    for i, labels in enumerate(label_sets):
        for k in labels:
            out[i, k] = 1.0
    return out


def similar(label_sets: list[set[int]], i: int, j: int) -> bool:
    """Items i and j share at least one label."""
    return len(label_sets[i] & label_sets[j]) > 0


def enumerate_triplets(label_sets: list[set[int]], mode: str, cross_modal: bool) -> Counter:
    """Triplet multiset {(a, p, n): multiplicity} for mode "all" or "reference"."""
    n_items = len(label_sets)
    items = range(n_items)
    triplets: Counter = Counter()
    if mode == "all":
        for a in items:
            for p in items:
                if similar(label_sets, a, p) and (cross_modal or p != a):
                    for n in items:
                        if not similar(label_sets, a, n):
                            triplets[(a, p, n)] += 1
    elif mode == "reference":
        for r in items:
            members = [i for i in items if similar(label_sets, r, i)]
            others = [n for n in items if not similar(label_sets, r, n)]
            for a in members:
                for p in members:
                    if a < p:
                        for n in others:
                            triplets[(a, p, n)] += 1
    else:
        raise ValueError(mode)
    return triplets


def hardest_triplets(
    anchor: torch.Tensor, other: torch.Tensor, label_sets: list[set[int]], cross_modal: bool
) -> Counter:
    """Batch-hard: per anchor, (a, farthest positive, nearest negative) if both exist."""
    triplets: Counter = Counter()
    for a in range(len(label_sets)):
        dist = {
            j: float(((anchor[a] - other[j]) ** 2).sum().detach()) for j in range(len(label_sets))
        }
        pos = [p for p in dist if similar(label_sets, a, p) and (cross_modal or p != a)]
        neg = [n for n in dist if not similar(label_sets, a, n)]
        if pos and neg:
            triplets[(a, max(pos, key=dist.get), min(neg, key=dist.get))] += 1
    return triplets


def triplet_mean(
    anchor: torch.Tensor, other: torch.Tensor, triplets: Counter, margin: float
) -> torch.Tensor:
    """Count-weighted mean of max(0, margin + |a - p|^2 - |a - n|^2); 0 (with grad) if none."""
    if not triplets:
        return 0.0 * (anchor.sum() + other.sum())
    keys = list(triplets)
    a, p, n = (torch.tensor(idx) for idx in zip(*keys, strict=True))
    count = torch.tensor([triplets[k] for k in keys], dtype=anchor.dtype)
    d_ap = ((anchor[a] - other[p]) ** 2).sum(1)
    d_an = ((anchor[a] - other[n]) ** 2).sum(1)
    return (count * torch.relu(margin + d_ap - d_an)).sum() / count.sum()


def brute_force_term(
    anchor: torch.Tensor,
    other: torch.Tensor,
    label_sets: list[set[int]],
    margin: float,
    mode: str,
    cross_modal: bool,
) -> torch.Tensor:
    """F(A->B) by enumeration; anchor/other are the [B, bits] codes of modalities A and B."""
    if mode == "hard":
        triplets = hardest_triplets(anchor, other, label_sets, cross_modal)
    else:
        triplets = enumerate_triplets(label_sets, mode, cross_modal)
    return triplet_mean(anchor, other, triplets, margin)


def brute_force_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    label_sets: list[set[int]],
    margin: float,
    mode: str,
    terms: tuple[str, ...] = ("i2t", "t2i", "i2i", "t2t"),
) -> torch.Tensor:
    """Sum of the requested terms, each by brute force."""
    codes = {"i": image, "t": text}
    total = 0.0 * (image.sum() + text.sum())
    for term in terms:
        anchor, other = codes[term[0]], codes[term[2]]
        total = total + brute_force_term(anchor, other, label_sets, margin, mode, CROSS_MODAL[term])
    return total
