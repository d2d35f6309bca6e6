"""The training loop's parts: one epoch, validation, RNG state, and the run context they share.

`Run` holds what every phase after set-up needs (arguments, data, tokenizer, model config,
device, run folder, the loss function, frozen features, the torchrun place) and builds the
loaders: training batches come in an order that is a function of (seed, epoch) alone, for any
number of processes. The model and the loss are passed in: nothing here imports a root module.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from cmh.data.caches.frozen_features import FeatureDataset, feature_loader, load_or_extract
from cmh.data.caches.resident_batches import longest_caption, resident_or_none
from cmh.data.caches.uint8_cache import CachedImageDataset, cached_loader, gpu_transform
from cmh.data.dataset import EpochSampler, HashingDataset, make_loader
from cmh.data.prepared_folder import PreparedData
from cmh.engine import torchrun
from cmh.engine.graph_step import StaticStep, static_epoch
from cmh.engine.schedules import lr_schedule
from cmh.engine.torchrun import Dist
from cmh.evaluation.encoding import default_directions, encode, pad_id, retrieval_metrics
from cmh.evaluation.reference_protocol import query_protocol
from cmh.evaluation.training_curves import curves_kept_current
from cmh.objectives import Objective, get_objective
from cmh.runs.checkpoints import save_checkpoint
from cmh.runs.run_folder import write_jsonl
from cmh.utils import progress
from cmh.utils.errors import UserError
from cmh.utils.interrupts import signals_held

log = logging.getLogger("train")


@dataclass
class Run:
    """What every phase after set-up needs: arguments, data, tokenizer, model config, device, run
    folder and, in frozen-feature mode, the cached backbone features."""

    args: argparse.Namespace
    data: PreparedData
    tokenizer: Any
    cfg: Any  # models.ModelConfig
    device: torch.device
    out: Path
    objective: Objective  # the registered objective (cmh.objectives): its loss, state, epoch
    loss_fn: Callable[..., dict] | None  # (image codes | None, text codes | None, labels) -> dict
    features: dict | None = None
    dist: Dist = Dist()
    objective_state: Any = None  # the objective's per-run state (DCMH's buffers), or None

    @classmethod
    def create(cls, args, data, tokenizer, cfg, device, out, dist: Dist = Dist()) -> Run:
        """The run of ``args``: its registered objective and that objective's loss for the
        directions trained (T->T alone for a text-only run)."""
        objective = get_objective(args.objective)
        terms = ("t2t",) if args.modalities == "text" else ("i2t", "t2i", "i2i", "t2t")
        loss_fn = objective.loss(args, terms) if objective.loss is not None else None
        return cls(args, data, tokenizer, cfg, device, Path(out), objective, loss_fn, dist=dist)

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """A loader over one split: shuffled and augmented for training, in id order otherwise."""
        args, cfg = self.args, self.cfg
        resident = args.resident_data
        cached = (args.image_cache or resident) and cfg.image_encoder != "none"
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
            images = cfg.image_encoder != "none"
            framing = {"framing": cfg.image_framing, "norm": cfg.image_norm}
            ds = HashingDataset(
                self.data, split, **common, images=images, seed=args.seed, **framing
            )
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
        return self._train_loader(ds, split, make, cached and resident)

    def _train_loader(self, ds, split: str, make, resident: bool):
        """The shuffled training loader of ``ds`` (or its resident batches, --resident-data)."""
        args = self.args
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
        static = args.cuda_graphs  # a fixed batch: the partial one dropped
        drop_last = len(ds) >= 2 * args.batch_size or static
        if static and len(ds) < args.batch_size:
            raise UserError(f"--cuda-graphs: the '{split}' split has {len(ds)} items, fewer than "
                            f"one --batch-size {args.batch_size}; lower --batch-size")  # fmt: skip
        if resident:
            batches = resident_or_none(ds, self.device, args, pad_id(self.tokenizer), log)
            if batches is not None:
                return batches
        if self.features is not None:
            return feature_loader(ds, per_rank, sampler=sampler, drop_last=drop_last)
        if isinstance(ds, HashingDataset):  # crops, flips, caption draws from (seed, epoch, item)
            sampler = EpochSampler(sampler)
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
            cfg = self.cfg
            batch["image"] = gpu_transform(
                batch.pop("image_u8"),
                cfg.image_size,
                train,
                framing=cfg.image_framing,
                norm=cfg.image_norm,
            )
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
        norm=cfg.image_norm,
    )
    return make_loader(
        ds,
        max(64, run.args.batch_size),
        shuffle=False,
        seed=0,
        num_workers=run.args.num_workers,
        pad_id=pad_id(run.tokenizer),
    )


def batch_loss(run: Run, model, batch: dict) -> tuple[dict[str, torch.Tensor], float]:
    """Forward pass and loss terms of one batch, and the factor to back-propagate them with.

    With --global-triplets under torchrun the codes of all ranks are gathered, so every rank
    computes the loss of the global batch; its gradient flows through the rank's own codes only,
    and the factor (the world size) turns DDP's gradient average into their sum, the gradient
    of the global-batch loss."""
    args, dist = run.args, run.dist
    graphs = args.cuda_graphs  # a captured graph may not use autocast's cache
    with torch.autocast(run.device.type, torch.bfloat16, args.amp, cache_enabled=not graphs):
        codes = model(batch)
    labels, scale = batch["labels"], 1.0
    if args.global_triplets and dist.enabled:
        codes = {k: torchrun.gather(dist, v) for k, v in codes.items()}
        labels, scale = torchrun.gather(dist, labels), float(dist.world)
    return run.loss_fn(codes.get("image"), codes.get("text"), labels), scale


def train_one_epoch(run: Run, model, loader, optimizer, epoch: int) -> dict:
    """One pass over the training loader. Returns the mean of each loss term (over steps and
    ranks). Raises FloatingPointError (naming epoch, step and item ids) on a non-finite loss."""
    model.train()
    sums: dict[str, torch.Tensor] = {}
    bar = progress.bar(loader, f"epoch {epoch}", disable=not run.dist.is_main)
    for step, batch in enumerate(bar):
        batch = {
            k: v.to(run.device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        out, scale = batch_loss(run, model, run.prepare_batch(batch, train=True))
        if torchrun.any_rank(run.dist, not torch.isfinite(out["loss"]), run.device):
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
    sums = torchrun.all_mean(run.dist, sums)
    return {k: float(v) / max(1, len(loader)) for k, v in sums.items()}


def graph_epoch(run: Run, model, loader, holder: dict, optimizer, epoch: int) -> dict:
    """--cuda-graphs: one epoch of cmh.engine.graph_step's static step (built on the first batch and
    kept in ``holder``); batches moved to the device and prepared there first."""

    def step_for(batch: dict) -> StaticStep:
        if "step" not in holder:
            length = longest_caption(loader.dataset) or None  # None: no token ids to pad
            holder["step"] = StaticStep(model, optimizer, lambda b: batch_loss(run, model, b)[0],
                                        batch, length, pad_id(run.tokenizer))  # fmt: skip
        return holder["step"]

    batches = (
        run.prepare_batch({k: v.to(run.device, non_blocking=True) if torch.is_tensor(v) and
                           k != "index" else v for k, v in b.items()}, train=True)
        for b in loader
    )  # fmt: skip
    model.train()
    return static_epoch(progress.bar(batches, f"epoch {epoch}"), step_for, epoch)


def frozen_features(run: Run, model, cache: str | Path) -> dict:
    """The frozen backbones' features of every item (cmh.data.caches.frozen_features), extracted once into
    ``cache``: rank 0 extracts, the other ranks then read its file."""
    features = None
    for turn in ("main", "others"):
        if run.dist.is_main == (turn == "main"):
            features = load_or_extract(
                model,
                run.data,
                lambda: all_items_loader(run),
                Path(cache),
                run.device,
                amp=run.args.amp,  # what the run uses: train.py turns --amp off when not on CUDA
            )
        torchrun.barrier(run.dist)
    return features


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


def set_learning_rates(optimizer, args, epoch: int) -> None:
    """--lr-schedule linear: each group's rate falls from its base rate at epoch 1 to --lr-end at
    the last epoch (cmh.engine.schedules.lr_schedule); constant: the base rate throughout."""
    if args.lr_schedule != "linear":
        return
    for group in optimizer.param_groups:
        group["lr"] = lr_schedule(epoch - 1, args.epochs, start=group["base_lr"], end=args.lr_end)


def checkpoint_epoch(run: Run, model, optimizer, record: dict, best: float, best_epoch):
    """best.pt when the validation score improved (first best on ties), the metrics line, then
    last.pt; returns the new (best, best_epoch)."""
    state = {
        "model": model.state_dict(),
        "model_config": run.cfg.to_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": record["epoch"],
        "args": vars(run.args),
        "rng": rng_state(),
    }
    if run.objective_state is not None:  # e.g. DCMH's F, G, B: --resume continues exactly
        state[run.objective.name] = run.objective_state.state_dict()
    with signals_held():  # Ctrl-C / SIGTERM wait for the epoch's files to be written whole
        return _write_epoch(run, state, record, best, best_epoch)


def _write_epoch(run: Run, state: dict, record: dict, best: float, best_epoch):
    """checkpoint_epoch's files."""
    out = run.out
    if "val_map_t2t" in record or "val_map_i2t" in record:
        score = selection_score(record)
        if score > best:
            best, best_epoch = score, record["epoch"]
            # best.pt is for evaluation: no optimizer state (half the size); resume uses last.pt
            weights = {k: v for k, v in state.items() if k not in ("optimizer", run.objective.name)}
            save_checkpoint({**weights, "best": best, "best_epoch": best_epoch}, out / "best.pt")
    write_jsonl(out / "metrics.jsonl", record)  # before last.pt: see trim_metrics
    save_checkpoint({**state, "best": best, "best_epoch": best_epoch}, out / "last.pt")
    return best, best_epoch


def epoch_record(run: Run, model, trained, loader, optimizer, graph: dict, epoch: int) -> dict:
    """One epoch trained; its record so far: epoch, loss terms, seconds of the steps, rates."""
    args, own_epoch, t0 = run.args, run.objective.train_epoch, time.perf_counter()
    loader.sampler.set_epoch(epoch)  # the shuffling order is a function of (seed, epoch)
    set_learning_rates(optimizer, args, epoch)
    if own_epoch is not None:
        terms = own_epoch(run, model, optimizer, run.objective_state, epoch)
    elif args.cuda_graphs:
        terms = graph_epoch(run, model, loader, graph, optimizer, epoch)
    else:
        terms = train_one_epoch(run, trained, loader, optimizer, epoch)
    record = {"epoch": epoch, **terms, "train_seconds": round(time.perf_counter() - t0, 3)}
    record["lr"] = {g["name"]: g["lr"] for g in optimizer.param_groups}
    return record


def fit(run: Run, model, optimizer, start: dict) -> None:
    """The epochs: train, validate every --eval-every epochs, checkpoint (best.pt, last.pt), keep
    curves.png current. Under torchrun, rank 0 alone validates, writes checkpoints and logs."""
    args, dist = run.args, run.dist
    loader = run.loader("train", train=True)
    if run.objective.train_epoch is not None:  # it averages gradients itself (objectives.dcmh)
        trained = model
        torchrun.broadcast_module(dist, model, parameters=True)  # rank 0's start
    else:
        trained = DistributedDataParallel(model) if dist.enabled else model
    if args.compile:  # the training forward only; evaluation and checkpoints use `model` itself
        trained = torch.compile(trained)
    best, best_epoch, graph = start["best"], start["best_epoch"], {}
    epochs = range(start["epoch"] + 1, args.epochs + 1)
    bar = progress.bar(
        epochs, "epochs", disable=not dist.is_main, initial=start["epoch"], total=args.epochs
    )
    with curves_kept_current(run.out, enabled=dist.is_main) as after_epoch:
        for epoch in bar:
            t0 = time.perf_counter()
            record = epoch_record(run, model, trained, loader, optimizer, graph, epoch)
            if not dist.is_main:
                continue
            if epoch % args.eval_every == 0 or epoch == args.epochs:
                record.update(validate(model, run))
            if args.query_every and epoch % args.query_every == 0:
                query_protocol(model, run, epoch)  # reported only; selection stays on validation
            record["seconds"] = round(time.perf_counter() - t0, 3)
            best, best_epoch = checkpoint_epoch(run, model, optimizer, record, best, best_epoch)
            after_epoch(last=epoch == args.epochs)  # RUN/curves.png: losses, validation, queries
            vals = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_map"))
            log.info(
                "epoch %d  loss %.4f  %s  %.1fs", epoch, record["loss"], vals, record["seconds"]
            )
