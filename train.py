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

from cmh import progress, torchrun
from cmh.argument_checks import check_args
from cmh.checkpoint_io import load_checkpoint
from cmh.cli import Parser
from cmh.dataset import reset_truncation_reports
from cmh.errors import UserError
from cmh.prepared import check_text_encoder
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

# The reference's settings; --demo replaces those the user did not give with DEMO_DEFAULTS.
# The default --margin is not among them: it scales with the code length (MARGIN_PER_BIT).
DEFAULTS = {
    "epochs": 300,
    "batch_size": 32,
    "lr": 1e-5,
    "bits": 32,
    "image_size": 224,
    "image_weights": "imagenet",
    "text_model": "bert-base-uncased",
    "max_length": 64,
    "eval_every": 1,
    "out": "runs/train",
}
DEMO_DEFAULTS = {
    "epochs": 8,
    "batch_size": 32,
    "lr": 3e-4,
    "bits": 32,
    "image_size": 64,
    "image_weights": "none",
    "text_model": "tiny",
    "max_length": 48,
    "eval_every": 2,
    "out": "runs/demo",
}
# Default --margin = 12 * bits / 32 (6 at 16 bits, 12 at 32, 24 at 64), as in every results table
# and scripts/run_all_bits.sh; with and without --demo (the demo is 32 bits: margin 12).
MARGIN_PER_BIT = 12.0 / 32


def _data_flags(a) -> None:
    a("--data", help="prepared dataset folder (python data.py prepare ...)")
    a(
        "--demo",
        action="store_true",
        help="generate and prepare the demo dataset in --demo-dir, CPU-sized settings "
        "(not with --data: the demo trains on its own data)",
    )
    a("--demo-dir", default="cache/demo", help="where --demo keeps its generated dataset")
    a("--out", help="run folder (default runs/train; runs/demo with --demo)")
    a("--resume", action="store_true", help="continue the run in --out from its last.pt")
    a("--seed", type=int, default=0, help="seed for initialisation, shuffling and augmentation")


def _model_flags(a) -> None:
    a("--bits", type=int, help="code length (default 32)")
    a(
        "--modalities",
        choices=("both", "text"),
        default="both",
        help="both towers, or the text tower alone (T->T loss and metric)",
    )
    a(
        "--image-weights",
        help="imagenet | none | PATH to a ResNet-18 state dict (default imagenet; none with --demo)",
    )
    a("--image-size", type=int, help="image side in pixels (default 224; 64 with --demo)")
    a(
        "--freeze-image-backbone",
        action="store_true",
        help="keep the ResNet-18 fixed but run it every step on augmented images; only the image "
        "hash layer trains (for cached features of both towers, see --freeze-backbones)",
    )
    a("--text-encoder", choices=("bert", "bow"), default="bert", help="text tower kind")
    a("--text-model", help="hub name, local folder, or 'tiny' (default bert-base-uncased)")
    a(
        "--pooling",
        choices=("cls", "mean"),
        default="cls",
        help="text feature: [CLS] or masked mean",
    )
    a("--max-length", type=int, help="tokens per caption (default 64)")
    a(
        "--text-dropout",
        type=float,
        help="dropout inside the text encoder (default: the model's own, 0.1 for BERT)",
    )


def _loss_flags(a) -> None:
    a(
        "--margin",
        type=float,
        help="triplet margin on squared distances (default 12 * bits / 32: 6 at 16 bits, "
        "12 at 32, 24 at 64)",
    )
    a(
        "--triplets",
        choices=("all", "hard", "reference"),
        default="all",
        help="all valid triplets, batch-hard, or the reference implementation's triplet set",
    )
    a("--quant-weight", type=float, default=0.0, help="weight of mean((|h|-1)^2)")


def _optimisation_flags(a) -> None:
    a("--epochs", type=int, help="epochs (default 300; 8 with --demo)")
    a("--batch-size", type=int, help="pairs per step (default 32)")
    a("--lr", type=float, help="Adam learning rate of both towers (default 1e-5; 3e-4 with --demo)")
    a("--weight-decay", type=float, default=5e-4, help="Adam weight decay (L2)")
    a(
        "--optimizer",
        choices=("joint", "separate"),
        default="joint",
        help="joint: one learning rate; separate: --image-lr and --text-lr per tower",
    )
    a("--image-lr", type=float, help="image tower learning rate with --optimizer separate")
    a("--text-lr", type=float, help="text tower learning rate with --optimizer separate")
    a("--eval-every", type=int, help="validate every N epochs (default 1; 2 with --demo)")


def _frozen_flags(a) -> None:
    a(
        "--freeze-backbones",
        action="store_true",
        help="frozen-feature mode: extract both backbones' features once (cached on disk), "
        "train only the hash layers",
    )
    a("--feature-cache", help="folder for frozen features (default DATA/features)")


def _hardware_flags(a) -> None:
    a("--device", default="auto", help="auto | cpu | cuda")
    progress.add_flag(a)
    a("--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16 autocast on CUDA")
    a("--num-workers", type=int, default=0, help="data loader worker processes")
    a(
        "--image-cache",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="read images from a uint8 cache (DATA/image_cache, built once) and crop, flip and "
        "normalise them on the device (see cmh/image_cache.py)",
    )
    a(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the training forward pass (pays a compile time once; worth it on GPUs)",
    )
    a(
        "--global-triplets",
        action="store_true",
        help="under torchrun: gather codes from all ranks so triplets span the global batch "
        "(default: each rank's slice)",
    )


FLAG_GROUPS = (
    ("data and run", _data_flags),
    ("model", _model_flags),
    ("loss", _loss_flags),
    ("optimisation", _optimisation_flags),
    ("frozen features", _frozen_flags),
    ("hardware and distributed", _hardware_flags),
)


def _parser(defaults: bool = True) -> argparse.ArgumentParser:
    """train.py's flags; with defaults=False every default is suppressed, so a parse returns only
    the flags on the command line."""
    p = Parser(description=__doc__)
    for title, add_flags in FLAG_GROUPS:
        add = p.add_argument_group(title).add_argument
        add_flags(add if defaults else _without_default(add))
    return p


def _without_default(add):
    return lambda *flags, **kw: add(*flags, **{**kw, "default": argparse.SUPPRESS})


def parse_args(argv=None) -> argparse.Namespace:
    """The arguments, defaults filled in; ``given`` lists the flags on the command line (also
    one given at its default value)."""
    args = _parser().parse_args(argv)
    args.given = sorted(vars(_parser(defaults=False).parse_args(argv)))
    for key, value in (DEMO_DEFAULTS if args.demo else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.margin is None:
        args.margin = MARGIN_PER_BIT * args.bits
    return args


def model_config(args: argparse.Namespace, data) -> ModelConfig:
    return ModelConfig(
        bits=args.bits,
        image_encoder="none" if args.modalities == "text" else "resnet18",
        image_weights=args.image_weights,
        image_size=args.image_size,
        freeze_image_backbone=args.freeze_image_backbone or args.freeze_backbones,
        freeze_text_encoder=args.freeze_backbones,
        text_encoder=args.text_encoder,
        text_model=args.text_model,
        pooling=args.pooling,
        max_length=args.max_length,
        text_dropout=args.text_dropout,
        bow_dim=data.bow_dim(),
        label_names=list(data.label_names),
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
    """One Adam; with --optimizer separate, one parameter group per tower with its own lr (Adam is
    per-parameter, so this equals two separate Adam optimizers)."""
    groups = []
    for name, tower in (("image", model.image), ("text", model.text)):
        if tower is None:
            continue
        lr = getattr(args, f"{name}_lr") if args.optimizer == "separate" else args.lr
        params = [p for p in tower.parameters() if p.requires_grad]
        groups.append({"params": params, "lr": lr, "name": name})
    return torch.optim.Adam(groups, weight_decay=args.weight_decay)


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
    else:
        model, tokenizer, cfg = load_model(state, torch.device("cpu"))
    optimizer = build_optimizer(args, model)
    start = {"epoch": 0, "best": -math.inf, "best_epoch": None}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start = {"epoch": state["epoch"], "best": state["best"], "best_epoch": state["best_epoch"]}
        log.info("resumed from %s at epoch %d", Path(args.out) / "last.pt", state["epoch"])
        trim_metrics(Path(args.out) / "metrics.jsonl", state["epoch"])
    return data, model, tokenizer, cfg, optimizer, start


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


def run(args: argparse.Namespace) -> int:
    if args.resume:
        args = resumed_args(args)
    check_args(args)
    out = Path(args.out)
    check_new_run(out, args.resume)
    if not args.resume:  # both towers' pretrained models, before any work
        check_pretrained(
            None if args.modalities == "text" else args.image_weights,
            args.text_model if args.text_encoder == "bert" else None,
        )
    dist, device = torchrun.init(resolve_device(args.device))
    if args.batch_size % dist.world:
        raise UserError(
            f"--batch-size {args.batch_size} (the global batch) must be divisible "
            f"by the number of processes, {dist.world}"
        )
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    setup_logging(out if dist.is_main else None)
    reset_truncation_reports()
    resolve_amp(args, device, dist.is_main)
    data, model, tokenizer, cfg, optimizer, start = prepare_run(args)
    model.to(device)
    run = Run(args, data, tokenizer, cfg, device, out, loss_function(args), dist=dist)
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
        log.info("%s", where_it_went(out, results["best_epoch"], args.demo))
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
