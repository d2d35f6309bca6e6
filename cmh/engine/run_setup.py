"""A training run's set-up: the model config of the flags, the optimizer, the start state (fresh,
warm-started or resumed from last.pt) and the objective's per-run state."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import torch

from cmh.data.prepare_flags import ensure_demo
from cmh.data.prepared_folder import check_text_encoder, load_prepared
from cmh.engine.loop import Run, set_rng_state
from cmh.models.hashers import ModelConfig, build_model, load_model
from cmh.objectives import get_objective
from cmh.runs.checkpoints import load_checkpoint
from cmh.runs.run_folder import trim_metrics
from cmh.runs.warm_start import init_from

log = logging.getLogger("train")


def model_config(args: argparse.Namespace, data=None) -> ModelConfig:
    """The model of ``args``; without ``data`` (the pretrained-model check before any work) no
    bag-of-words width and no label names."""
    clip = args.backbone == "clip"  # both towers from one CLIP model
    image = "none" if args.modalities == "text" else "clip" if clip else args.image_model
    text = "clip" if clip else args.text_encoder
    return ModelConfig(
        bits=args.bits,
        image_encoder=image,
        image_weights=args.image_weights,
        clip_model=args.clip_model if "clip" in (image, text) else "",
        head_dropout=args.head_dropout,
        head_norm=args.head_norm,
        image_size=args.image_size,
        image_framing=args.image_framing,
        image_norm=args.image_norm,
        freeze_image_backbone=args.freeze_image_backbone or args.freeze_backbones,
        image_batchnorm=args.image_batchnorm,
        freeze_text_encoder=args.freeze_backbones,
        text_encoder=text,
        text_model=args.text_model,
        pooling=args.pooling,
        head_activation=get_objective(args.objective).head_activation,
        max_length=args.max_length,
        text_dropout=args.text_dropout,
        bow_dim=data.bow_dim() if data is not None else 0,
        label_names=list(data.label_names) if data is not None else [],
    )


def build_optimizer(args: argparse.Namespace, model) -> torch.optim.Optimizer:
    """One Adam (or plain SGD with --solver sgd); with --optimizer separate, one parameter group
    per tower with its own lr (per-parameter, so this equals two separate optimizers). Each group
    keeps its ``base_lr`` for --lr-schedule linear."""
    groups = []
    for name, tower in (("image", model.image), ("text", model.text)):
        if tower is None:
            continue
        lr = args.get(f"{name}_lr") if args.optimizer == "separate" else args.lr
        params = [p for p in tower.parameters() if p.requires_grad]
        groups.append({"params": params, "lr": lr, "base_lr": lr, "name": name})
    solver = torch.optim.SGD if args.solver == "sgd" else torch.optim.Adam
    return solver(groups, lr=args.lr, weight_decay=args.weight_decay)


def prepare_run(args: argparse.Namespace):
    """Data, model, tokenizer, optimizer and start state (fresh, or resumed from last.pt)."""
    data = load_prepared(ensure_demo(args.demo_dir) if args.demo else args.data)
    args.data = str(data.root)
    state = load_checkpoint(Path(args.out) / "last.pt") if args.resume else None
    torch.manual_seed(args.seed)
    if state is None:
        check_text_encoder(data, args.text_encoder)  # bert on a bag-of-words set: refused
        cfg = model_config(args, data)
        model, tokenizer = build_model(cfg, captions=data.captions(data.splits["train"]))
        if args.init_from:
            epoch = init_from(model, cfg.to_dict(), args.init_from)
            log.info("weights from %s (its epoch %d)", args.init_from, epoch)
    else:
        model, tokenizer, cfg = load_model(state, torch.device("cpu"))
    optimizer = build_optimizer(args, model)
    start = {"epoch": 0, "best": -math.inf, "best_epoch": None}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start = {"epoch": state["epoch"], "best": state["best"], "best_epoch": state["best_epoch"]}
        start["objective_state"] = state.get(args.objective)
        log.info("resumed from %s at epoch %d", Path(args.out) / "last.pt", state["epoch"])
        trim_metrics(Path(args.out) / "metrics.jsonl", state["epoch"])
        trim_metrics(Path(args.out) / "query_curve.jsonl", state["epoch"])
    return data, model, tokenizer, cfg, optimizer, start


def objective_state(run: Run, model, saved: dict | None):
    """The objective's per-run state (DCMH's buffers), fresh or that of last.pt; None when the
    objective keeps none."""
    if run.objective.new_state is None:
        return None
    state = run.objective.new_state(run, model)
    if saved is not None:
        state.load_state_dict({k: v.to(run.device) if torch.is_tensor(v) else v
                               for k, v in saved.items()})  # fmt: skip
    return state
