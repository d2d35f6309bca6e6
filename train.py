"""Train the image and text hashers jointly with the inter/intra-modal triplet ranking loss.

    python train.py --data DIR --bits 32 --margin 12      # a prepared dataset (python data.py prepare)
    python train.py --demo                                # generated demo data, CPU-sized settings

Phases: arguments -> data -> model -> optimizer -> resume -> epochs (train, validate, checkpoint)
-> final evaluation of the queries against the database with the best checkpoint. Model selection
uses the validation items against the training items only; the queries are touched once, at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch

from cmh import progress, torchrun, train_flags
from cmh.argument_checks import check_args
from cmh.checkpoint_io import load_checkpoint
from cmh.dataset import reset_truncation_reports
from cmh.dcmh_training import new_state
from cmh.errors import UserError
from cmh.prepared import check_text_encoder
from cmh.query_protocol import seed_protocol
from cmh.run_folder import (
    check_new_run,
    record_failure,
    resolve_amp,
    resumed_args,
    setup_logging,
    trim_metrics,
    where_it_went,
)
from cmh.training_loop import (
    Run,
    fit,
    frozen_features,
    set_rng_state,
)
from cmh.warm_start import init_from
from data import ensure_demo, load_prepared
from evaluate import (
    default_directions,
    format_table,
    load_model,
    plot_title,
    resolve_device,
    retrieval_metrics,
    save_plots,
)
from loss import hashing_loss
from models import ModelConfig, build_model, check_pretrained

log = logging.getLogger("train")


def _parser(defaults: bool = True) -> argparse.ArgumentParser:
    return train_flags.parser(defaults, description=__doc__)


def parse_args(argv=None) -> argparse.Namespace:
    """train.py's arguments (cmh/train_flags.py: the flags, their groups and defaults)."""
    return train_flags.parse_args(argv, description=__doc__)


def model_config(args: argparse.Namespace, data=None) -> ModelConfig:
    """The model of ``args``; without ``data`` (the pretrained-model check before any work) no
    bag-of-words width and no label names."""
    clip = args.backbone == "clip"
    return ModelConfig(
        bits=args.bits,
        image_encoder="none" if args.modalities == "text" else "clip" if clip else args.image_model,
        image_weights=args.image_weights,
        clip_model=args.clip_model if clip else "",
        head_dropout=args.head_dropout,
        head_norm=args.head_norm,
        image_size=args.image_size,
        image_framing=args.image_framing,
        image_norm=args.image_norm,
        freeze_image_backbone=args.freeze_image_backbone or args.freeze_backbones,
        image_batchnorm=args.image_batchnorm,
        freeze_text_encoder=args.freeze_backbones,
        text_encoder="clip" if clip else args.text_encoder,
        text_model=args.text_model,
        pooling=args.pooling,
        head_activation="none" if args.objective == "dcmh" else "tanh",
        max_length=args.max_length,
        text_dropout=args.text_dropout,
        bow_dim=data.bow_dim() if data is not None else 0,
        label_names=list(data.label_names) if data is not None else [],
    )


def loss_function(args: argparse.Namespace):
    """(image codes | None, text codes | None, labels) -> loss.hashing_loss's dict, with the
    run's margin, triplet set, quantization weight and terms (T->T alone for a text-only run)."""
    terms = ("t2t",) if args.modalities == "text" else ("i2t", "t2i", "i2i", "t2t")

    def loss_fn(image_codes, text_codes, labels):
        return hashing_loss(
            image_codes,
            text_codes,
            labels,
            args.margin,
            triplets=args.triplets,
            quant_weight=args.quant_weight,
            terms=terms,
        )

    return loss_fn


def build_optimizer(args: argparse.Namespace, model) -> torch.optim.Optimizer:
    """One Adam (or plain SGD with --solver sgd); with --optimizer separate, one parameter group
    per tower with its own lr (per-parameter, so this equals two separate optimizers). Each group
    keeps its ``base_lr`` for --lr-schedule linear."""
    groups = []
    for name, tower in (("image", model.image), ("text", model.text)):
        if tower is None:
            continue
        lr = getattr(args, f"{name}_lr") if args.optimizer == "separate" else args.lr
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
        start["dcmh"] = state.get("dcmh")
        log.info("resumed from %s at epoch %d", Path(args.out) / "last.pt", state["epoch"])
        trim_metrics(Path(args.out) / "metrics.jsonl", state["epoch"])
        trim_metrics(Path(args.out) / "query_curve.jsonl", state["epoch"])
    return data, model, tokenizer, cfg, optimizer, start


def dcmh_state(run: Run, model, saved: dict | None):
    """--objective dcmh: its buffers, fresh (from the seed) or those of last.pt."""
    state = new_state(run, model)
    if saved is not None:
        state.load_state_dict({k: v.to(run.device) if torch.is_tensor(v) else v
                               for k, v in saved.items()})  # fmt: skip
    return state


def final_evaluation(run: Run) -> dict:
    """The queries against the database, with the weights of best.pt: the reported numbers."""
    state = load_checkpoint(run.out / "best.pt")
    model, _, _ = load_model(state, run.device)
    enc = run.encode(model, ("query", "database"))
    results = retrieval_metrics(enc["query"], enc["database"], default_directions(model))
    results.update(
        best_epoch=state["epoch"],
        bits=run.cfg.bits,
        margin=run.args.margin,
        n_query=len(enc["query"]["labels"]),
        n_database=len(enc["database"]["labels"]),
        **seed_protocol(run.out),  # --query-every: the queries-selected numbers, beside ours
    )
    (run.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    title = plot_title(run.args.data, run.cfg.bits, state["epoch"])
    save_plots(
        enc["query"],
        enc["database"],
        run.out,
        default_directions(model),
        results=results,
        title=title,
    )
    return results


def check_processes(args: argparse.Namespace, dist) -> None:
    """What the number of torchrun processes rules out."""
    for flag in ("cuda_graphs", "resident_data"):
        if dist.world > 1 and getattr(args, flag, False):
            raise UserError(
                f"--{flag.replace('_', '-')} runs in one process (no DDP gradient hooks in a "
                "captured step, no split of the resident data); run it without torchrun, or "
                "use --parallel in scripts/run_all_bits.sh for several runs on one GPU"
            )
    if args.batch_size % dist.world:
        raise UserError(
            f"--batch-size {args.batch_size} (the global batch) must be divisible "
            f"by the number of processes, {dist.world}"
        )


def run(args: argparse.Namespace) -> int:
    if args.resume:
        args = resumed_args(args)
    check_args(args)
    out = Path(args.out)
    check_new_run(out, args.resume)
    if not args.resume:  # both towers' pretrained models, before any work
        check_pretrained(model_config(args))
    dist, device = torchrun.init(resolve_device(args.device))
    check_processes(args, dist)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    setup_logging(out if dist.is_main else None)
    reset_truncation_reports()
    resolve_amp(args, device, dist.is_main)
    data, model, tokenizer, cfg, optimizer, start = prepare_run(args)
    model.to(device)
    run = Run(args, data, tokenizer, cfg, device, out, loss_function(args), dist=dist)
    if args.objective == "dcmh":
        run.dcmh = dcmh_state(run, model, start.get("dcmh"))
    if args.freeze_backbones:
        run.features = frozen_features(run, model, args.feature_cache or data.root / "features")
    if dist.is_main:
        (out / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    sizes = {k: len(v) for k, v in data.splits.items()}
    log.info("data %s: %s; model: %d bits, image %s, text %s (%s); device %s", data.root, sizes,
             cfg.bits, cfg.image_encoder, cfg.text_encoder, cfg.text_model, device)  # fmt: skip
    try:
        fit(run, model, optimizer, start)
    except FloatingPointError as e:
        last = out / "last.pt"
        kept = (
            f"The last good checkpoint is {last}"
            if last.is_file()
            else "no checkpoint was written (the first epoch did not complete)"
        )
        log.error("stopped: %s. %s", e, kept)
        return 1
    except torch.OutOfMemoryError as e:
        raise UserError(
            f"out of GPU memory at --batch-size {args.batch_size} ({str(e).splitlines()[0]}); "
            f"lower --batch-size or add --amp. The last good checkpoint is {out / 'last.pt'}"
        ) from e
    if dist.is_main:
        results = final_evaluation(run)
        log.info(
            "final evaluation (queries vs database, best epoch %s):\n%s",
            results["best_epoch"],
            format_table(results),
        )
        log.info("%s", where_it_went(out, results["best_epoch"], args.demo, args.given))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    progress.configure(args.progress)
    log.handlers.clear()  # an earlier run's log (same process) must not receive this one's error
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        record_failure(Path(args.out), f"error: {e}")
        return 2
    finally:
        torchrun.shutdown()


if __name__ == "__main__":
    sys.exit(main())
