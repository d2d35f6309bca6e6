"""The training steps bench/gpu_check.py times, shared with its worker processes (gpu_parallel).

Both towers at full size: ResNet-18 and a BERT-base-size encoder (transformers.BertConfig
defaults: 12 layers, width 768, vocabulary 30522; random init, the compute of the pretrained
weights without a download), 32 bits, the triplet loss with margin 12, Adam (lr 1e-5, weight
decay 5e-4). Two ways to run a step on the same model and batches:

- eager: ``zero_grad``, forward, loss, backward, ``optimizer.step()`` from Python, as
  train.py's default loop;
- static: cmh.engine.graph_step.StaticStep, as train.py --cuda-graphs — on a CUDA device the step is
  captured once as a CUDA graph and replayed; on the CPU (tests) it runs on its static buffers
  without capture (label "static, not captured").
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cmh.models.hashers import TINY_BERT

FULL = {
    "name": "full",
    "image": 224,
    "bert": {},
    "batches": (32, 128),
    "steps": 10,
    "warmup": 3,
    "eval": (2000, 18000),
    "workers": 4,
    "items": 2400,
    "parallel_steps": 60,
    "loop_items": 20_000,
}
TINY = {
    "name": "tiny",
    "image": 32,
    "bert": TINY_BERT,  # the --text-model tiny architecture
    "batches": (4, 8),
    "steps": 2,
    "warmup": 1,
    "eval": (50, 300),
    "workers": 0,
    "items": 60,
    "parallel_steps": 3,
    "loop_items": 100,
}
SIZES = {"full": FULL, "tiny": TINY}
TOKENS, TRAIN_BITS, N_LABELS, MARGIN = 40, 32, 255, 12.0


def build(size: dict, device: torch.device):
    """CrossModalHasher (ResNet-18 + BERT of ``size``, random init) and its Adam, seed 0."""
    from transformers import BertConfig, BertModel

    from cmh.models.hashers import CrossModalHasher, ImageHasher, ModelConfig, TextHasher
    from cmh.models.image_backbones import build_backbone

    torch.manual_seed(0)
    cfg = ModelConfig(bits=TRAIN_BITS, image_weights="none", image_size=size["image"])
    bert = BertModel(BertConfig(**size["bert"]), add_pooling_layer=False)
    backbone, width = build_backbone("resnet18", None, size["image"])
    model = CrossModalHasher(
        cfg, ImageHasher(TRAIN_BITS, backbone, width=width), TextHasher(TRAIN_BITS, bert)
    )
    model.to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=5e-4)


def synthetic_batches(size: dict, batch: int, device: torch.device):
    """An endless iterator of one fixed synthetic batch on ``device``."""
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(batch, N_LABELS, generator=g) < 4 / N_LABELS).float()
    labels[torch.arange(batch), torch.arange(batch) % 8] = 1.0  # >= 1 label; dissimilar pairs
    fixed = {
        "image": torch.randn(batch, 3, size["image"], size["image"], generator=g),
        "input_ids": torch.randint(1000, 30000, (batch, TOKENS), generator=g),
        "attention_mask": torch.ones(batch, TOKENS, dtype=torch.long),
        "labels": labels,
    }
    fixed = {k: v.to(device) for k, v in fixed.items()}
    while True:
        yield fixed


def forward_loss(model, bf16: bool):
    """``batch -> loss terms`` of ``model`` (bf16 autocast when ``bf16``; no autocast weight
    cache, which a captured graph may not hold)."""
    from cmh.objectives.triplet_loss import hashing_loss

    device_type = next(model.parameters()).device.type

    def run(batch: dict) -> dict:
        with torch.autocast(device_type, torch.bfloat16, enabled=bf16, cache_enabled=False):
            codes = model(batch)
        return hashing_loss(codes["image"], codes["text"], batch["labels"], MARGIN)

    return run


def eager_step(model, optimizer, bf16: bool):
    """``batch -> loss terms``: one eager training step."""
    loss_of = forward_loss(model, bf16)

    def step(batch: dict) -> dict:
        out = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        return out

    return step


def static_step(model, optimizer, bf16: bool, example: dict, text_length: int, pad: int = 0):
    """cmh.engine.graph_step.StaticStep over ``example``'s shapes (warm-up and capture happen here)."""
    from cmh.engine.graph_step import StaticStep

    return StaticStep(model, optimizer, forward_loss(model, bf16), example, text_length, pad)


def path_label(path: str, device: torch.device) -> str:
    """ "eager", "cuda graph", or "static, not captured" (the static path without CUDA)."""
    if path == "eager":
        return "eager"
    return "cuda graph" if device.type == "cuda" else "static, not captured"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, batches, device: torch.device, warmup: int, steps: int) -> dict:
    """Median seconds per step (batch fetch included; the device synchronised around each
    step), the last loss and the peak device memory, over ``warmup`` + ``steps`` steps."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], float("nan")
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        out = step(next(batches))
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            loss = float(out["loss"].detach())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"s_per_step": float(np.median(times)), "loss": loss, "peak_gib": peak}
