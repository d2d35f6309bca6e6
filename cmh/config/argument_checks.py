"""train.py's refusals of impossible flag combinations, before any work starts.

Each rule names the flag to change and the value found; see docs/errors.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cmh.objectives import get_objective
from cmh.utils.errors import UserError


def check_args(args: argparse.Namespace) -> None:
    """Refuse impossible combinations before any work starts."""
    rules = [
        (args.bits >= 1, f"--bits must be >= 1, got {args.bits}"),
        (args.margin >= 0, f"--margin must be >= 0, got {args.margin}"),
        (
            args.batch_size >= 2,
            f"--batch-size must be >= 2 (triplets need pairs), got {args.batch_size}",
        ),
        (args.epochs >= 1, f"--epochs must be >= 1, got {args.epochs}"),
        (
            math.isfinite(args.lr) and args.lr > 0,
            f"--lr must be a finite number > 0, got {args.lr}",
        ),
        (args.weight_decay >= 0, f"--weight-decay must be >= 0, got {args.weight_decay}"),
        (args.eval_every >= 1, f"--eval-every must be >= 1, got {args.eval_every}"),
        (
            args.query_every is None or args.query_every >= 1,
            f"--query-every must be >= 1 (or left out: off), got {args.query_every}",
        ),
        (
            args.max_length == 0 or args.max_length >= 2,
            f"--max-length must be >= 2 (or 0: the text model's limit), got {args.max_length}",
        ),
        (args.image_size >= 16, f"--image-size must be >= 16, got {args.image_size}"),
        (args.num_workers >= 0, f"--num-workers must be >= 0, got {args.num_workers}"),
        (
            args.device in ("auto", "cpu", "cuda"),
            f"--device must be auto, cpu or cuda, got {args.device!r}",
        ),
        (args.demo or args.data, "give --data DIR (a prepared dataset) or --demo"),
        (
            not (args.demo and args.data),
            "--demo trains on its own generated data (in --demo-dir), so --data does not go "
            "with it; drop --data, or drop --demo to train on DIR",
        ),
    ]
    init = args.init_from
    if init and not args.resume and not Path(init).is_file():
        rules.append((False, f"--init-from {init}: no such checkpoint file"))
    for ok, message in rules:
        if not ok:
            raise UserError(message)
    if args.optimizer == "separate" and (args.image_lr is None or args.text_lr is None):
        raise UserError("--optimizer separate needs both --image-lr and --text-lr")
    for flag, value in (("--image-lr", args.image_lr), ("--text-lr", args.text_lr)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{flag} must be a finite number > 0, got {value}")
    if args.freeze_backbones and args.text_encoder == "bow":
        raise UserError(
            "--freeze-backbones caches pretrained backbone features; the bag-of-words tower has "
            "no backbone (train it without --freeze-backbones: it is already fast)"
        )
    if args.freeze_backbones and args.image_cache:
        raise UserError(
            "--image-cache does not go with --freeze-backbones: frozen-feature mode extracts the "
            "image features once and never reads images per step, so the image cache would be "
            "ignored; drop --image-cache"
        )
    check_objective(args)
    check_static_step(args)


def check_static_step(args: argparse.Namespace) -> None:
    """--cuda-graphs and --resident-data: what they cannot go with, and why."""
    why = {
        "cuda_graphs": (
            ("solver", "sgd", "its first step is not the step of a zeroed state, so the "
             "capture's warm-up could not be undone; use Adam"),
            ("compile", True, "the graph already removes the launch cost; pick one"),
            ("lr_schedule", "linear", "the captured step holds the learning rate as a "
             "constant, so a changing rate would be ignored; use --lr-schedule constant"),
            ("triplets", "hard", "batch-hard mining keeps a number of anchors that depends on "
             "the batch, a shape a captured graph cannot hold; use --triplets all or reference"),
        ),
        "resident_data": (
            ("freeze_backbones", True, "frozen-feature mode already trains from features in "
             "memory, never from images"),
            ("text_encoder", "bow", "the bag-of-words vectors are not held on the device; "
             "drop --resident-data"),
            ("modalities", "text", "a text-only run has no images to hold; drop --resident-data"),
        ),
    }  # fmt: skip
    for flag, rules in why.items():
        if not args.get(flag):
            continue
        for other, value, reason in rules:
            if args.get(other) == value:
                shown = f"--{other.replace('_', '-')}" + ("" if value is True else f" {value}")
                raise UserError(f"--{flag.replace('_', '-')} does not go with {shown} ({reason})")


def check_objective(args: argparse.Namespace) -> None:
    """The schedule's refusals, then the objective's own (its flags, and the run flags it
    refuses: cmh.objectives.registry.Objective.refuses)."""
    lr_end = args.lr_end
    if not (math.isfinite(lr_end) and lr_end > 0):
        raise UserError(f"--lr-end must be a finite number > 0, got {lr_end}")
    objective = get_objective(args.objective)
    if objective.check is not None:
        objective.check(args)
    for flag, why in objective.refuses.items():
        if args.get(flag):
            raise UserError(
                f"--{flag.replace('_', '-')} does not go with --objective {objective.name} ({why})"
            )
