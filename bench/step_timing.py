"""Synthetic batches and the timed training step that bench_train_step.py and bench_backbones.py
share (a helper module of bench/, not a benchmark itself)."""

from __future__ import annotations

import time

import torch

from cmh.objectives.triplet_loss import hashing_loss

WORDS = [
    "a",
    "red",
    "car",
    "in",
    "front",
    "of",
    "a",
    "white",
    "house",
    "two",
    "trees",
    "on",
    "the",
    "left",
    "blue",
    "sky",
    "boat",
    "sea",
    "person",
    "walking",
    "street",
    "dog",
    "grass",
    "mountain",
    "snow",
    "bicycle",
    "flag",
    "church",
    "window",
]


def synthetic_batch(tokenizer, batch: int, image_size: int, n_labels: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(WORDS), (batch, 20), generator=g).tolist()
    captions = [" ".join(WORDS[i] for i in row) for row in picks]
    tok = tokenizer(captions, truncation=True, max_length=48, padding=True, return_tensors="pt")
    labels = (torch.rand(batch, n_labels, generator=g) < 4 / n_labels).float()
    return {
        "image": torch.randn(batch, 3, image_size, image_size, generator=g),
        "input_ids": tok["input_ids"],
        "attention_mask": tok["attention_mask"],
        "labels": labels,
    }


def step(model, optimizer, batch: dict, margin: float) -> float:
    codes = model(batch)
    loss = hashing_loss(codes["image"], codes["text"], batch["labels"], margin)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def time_steps(model, optimizer, batches, margin: float, steps: int, warmup: int = 2) -> float:
    """Seconds per step (median over `steps`), after `warmup` steps; `batches` is an iterator."""
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step(model, optimizer, next(batches), margin)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
