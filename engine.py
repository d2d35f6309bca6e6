"""One epoch of training, validation and the run context they share (used by train.py).

`Run` holds what every phase after set-up needs (arguments, data, tokenizer, model config,
device, run folder, frozen features, the torchrun place) and builds the loaders: training
batches come in an order that is a function of (seed, epoch) alone, for any number of processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import distributed
from data import HashingDataset, PreparedData, make_loader
from distributed import Dist
from errors import UserError
from evaluate import default_directions, encode, pad_id, retrieval_metrics
from features import FeatureDataset, feature_loader
from image_cache import CachedImageDataset, cached_loader, gpu_transform
from loss import hashing_loss
from models import ModelConfig

log = logging.getLogger("train")


@dataclass
class Run:
    """What every phase after set-up needs: arguments, data, tokenizer, model config, device, run
    folder and, in frozen-feature mode, the cached backbone features."""

    args: argparse.Namespace
    data: PreparedData
    tokenizer: Any
    cfg: ModelConfig
    device: torch.device
    out: Path
    features: dict | None = None
    dist: Dist = Dist()

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """A loader over one split: shuffled and augmented for training, in id order otherwise."""
        args, cfg = self.args, self.cfg
        cached = getattr(args, "image_cache", False) and cfg.image_encoder != "none"
        make = make_loader
        common = {
            "tokenizer": self.tokenizer,
            "max_length": cfg.max_length,
            "image_size": cfg.image_size,
            "train": train,
            "bow": cfg.text_encoder == "bow",
        }
        if self.features is not None:
            ds = FeatureDataset(self.features, self.data, split)
        elif cached:
            ds = CachedImageDataset(self.data, split, **common, build_workers=args.num_workers)
            make = functools.partial(cached_loader, pin_memory=self.device.type == "cuda")
        else:
            ds = HashingDataset(self.data, split, **common, images=cfg.image_encoder != "none")
        if not train:
            if self.features is not None:
                return feature_loader(ds, args.batch_size)
            return make(
                ds,
                args.batch_size,
                shuffle=False,
                seed=0,
                num_workers=args.num_workers,
                pad_id=pad_id(self.tokenizer),
            )
        if len(ds) < 2:
            raise UserError(f"the '{split}' split has {len(ds)} item(s); training needs at least 2")
        # The order is a function of (seed, epoch) alone (sampler.set_epoch), the same permutation
        # for any world size: rank r takes every world-th item, so the ranks' batches together
        # are the single-process batch.
        sampler = DistributedSampler(
            ds,
            num_replicas=self.dist.world,
            rank=self.dist.rank,
            shuffle=True,
            seed=args.seed,
            drop_last=True,
        )
        per_rank = args.batch_size // self.dist.world
        drop_last = len(ds) >= 2 * args.batch_size
        if self.features is not None:
            return feature_loader(ds, per_rank, sampler=sampler, drop_last=drop_last)
        return make(
            ds,
            per_rank,
            shuffle=False,
            seed=args.seed,
            sampler=sampler,
            num_workers=args.num_workers,
            drop_last=drop_last,
            pad_id=pad_id(self.tokenizer),
        )

    def prepare_batch(self, batch: dict, train: bool = False) -> dict:
        """On the device: the cached uint8 images (--image-cache) -> the normalised "image"."""
        if "image_u8" in batch:
            batch["image"] = gpu_transform(batch.pop("image_u8"), self.cfg.image_size, train)
        return batch

    def encode(self, model, splits: tuple[str, ...]) -> dict[str, dict]:
        """±1 codes, labels and ids of each split (see evaluate.encode)."""
        return {
            s: encode(
                model,
                self.loader(s),
                self.device,
                self.args.amp,
                desc=f"encode {s}",
                prepare_batch=self.prepare_batch,
            )
            for s in splits
        }


def all_items_loader(run: Run) -> DataLoader:
    """Every item of the dataset (evaluation transform), for feature extraction."""
    everything = sorted({i for ids in run.data.splits.values() for i in ids})
    data = dataclasses.replace(run.data, splits={**run.data.splits, "all": everything})
    cfg = run.cfg
    ds = HashingDataset(
        data,
        "all",
        tokenizer=run.tokenizer,
        max_length=cfg.max_length,
        image_size=cfg.image_size,
        images=cfg.image_encoder != "none",
    )
    return make_loader(
        ds,
        max(64, run.args.batch_size),
        shuffle=False,
        seed=0,
        num_workers=run.args.num_workers,
        pad_id=pad_id(run.tokenizer),
    )


def loss_terms(args) -> tuple[str, ...]:
    return ("t2t",) if args.modalities == "text" else ("i2t", "t2i", "i2i", "t2t")


def batch_loss(run: Run, model, batch: dict) -> tuple[dict[str, torch.Tensor], float]:
    """Forward pass and loss terms of one batch, and the factor to back-propagate them with.

    With --global-triplets under torchrun the codes of all ranks are gathered, so every rank
    computes the loss of the global batch; its gradient flows through the rank's own codes only,
    and the factor (the world size) turns DDP's gradient average into their sum, the gradient
    of the global-batch loss."""
    args, dist = run.args, run.dist
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=args.amp):
        codes = model(batch)
    labels, scale = batch["labels"], 1.0
    if args.global_triplets and dist.enabled:
        codes = {k: distributed.gather(dist, v) for k, v in codes.items()}
        labels, scale = distributed.gather(dist, labels), float(dist.world)
    out = hashing_loss(
        codes.get("image"),
        codes.get("text"),
        labels,
        args.margin,
        triplets=args.triplets,
        quant_weight=args.quant_weight,
        terms=loss_terms(args),
    )
    return out, scale


def train_one_epoch(run: Run, model, loader, optimizer, epoch: int) -> dict:
    """One pass over the training loader. Returns the mean of each loss term (over steps and
    ranks). Raises FloatingPointError (naming epoch, step and item ids) on a non-finite loss."""
    model.train()
    sums: dict[str, torch.Tensor] = {}
    bar = tqdm(
        loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, disable=not run.dist.is_main
    )
    for step, batch in enumerate(bar):
        batch = {
            k: v.to(run.device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        out, scale = batch_loss(run, model, run.prepare_batch(batch, train=True))
        if distributed.any_rank(run.dist, not torch.isfinite(out["loss"]), run.device):
            raise FloatingPointError(
                f"non-finite loss ({out['loss'].item()}) at epoch {epoch}, step {step}, "
                f"batch item ids {batch['index'].tolist()} (rank {run.dist.rank})"
            )
        optimizer.zero_grad(set_to_none=True)
        (out["loss"] * scale).backward()
        try:
            optimizer.step()
        except RuntimeError as e:  # a step too large for float32 ("... without overflow")
            if "overflow" not in str(e):
                raise
            raise FloatingPointError(
                f"the optimizer step overflowed float32 ({e}) at epoch {epoch}, step {step}, "
                f"batch item ids {batch['index'].tolist()}; lower --lr"
            ) from e
        for k, v in out.items():  # summed on the device: no host sync per term and step
            sums[k] = sums.get(k, 0.0) + v.detach()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{out['loss'].item():.3f}")
    sums = distributed.all_mean(run.dist, sums)
    return {k: float(v) / max(1, len(loader)) for k, v in sums.items()}


def rng_state() -> dict:
    """Every RNG the run draws from, as plain types (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = np.array(n["keys"], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def validate(model, run: Run) -> dict:
    """mAP of the validation items (queries) against the training items (database)."""
    enc = run.encode(model, ("val", "train"))
    res = retrieval_metrics(enc["val"], enc["train"], default_directions(model))
    return {f"val_{k}": v for k, v in res.items()}


def selection_score(val: dict) -> float:
    """Mean of the tie-by-index mAPs reported (I2T and T2I, or T2T alone)."""
    maps = [v for k, v in val.items() if k.startswith("val_map_") and not k.endswith("tie_avg")]
    return float(np.mean(maps))
