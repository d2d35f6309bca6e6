"""How much a pretrained image backbone's BatchNorm statistics alone move its codes.

    python bench/bench_batchnorm_drift.py --run runs/twemoji/finetune-32-seed0

Rebuilds the model of a run made with --init-from (its args.json: the same towers, code length
and starting checkpoint), reports the validation mAP at the start, then passes once over the
training split in training mode without any weight update (no_grad: only the BatchNorm running
statistics change, as they do in the first epoch of fine-tuning) and reports it again, with the
backbone's BatchNorm layers training (the default) and frozen (--image-batchnorm frozen).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from cmh.config.train_flags import parse_args
from cmh.engine.loop import Run, validate
from cmh.engine.run_setup import prepare_run
from cmh.utils.cli import Parser

SKIP = {"out", "epochs", "eval_every", "progress", "query_every", "resume", "image_batchnorm"}


def run_flags(recorded: dict) -> list[str]:
    """The run's own flags (args.json "given"), less those of its length and output."""
    argv = []
    for key in recorded["given"]:
        value, flag = recorded[key], f"--{key.replace('_', '-')}"
        if key in SKIP or value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        else:
            argv += [flag, *(map(str, value) if isinstance(value, list) else [str(value)])]
    return argv


def val_maps(model, run) -> str:
    v = validate(model, run)
    return f"I2T {v['val_map_i2t']:.4f} / T2I {v['val_map_t2i']:.4f}"


def probe(recorded: dict, batchnorm: str, out: Path) -> tuple[str, str]:
    args = parse_args([*run_flags(recorded), "--out", str(out), "--image-batchnorm", batchnorm,
                             "--no-progress"])  # fmt: skip
    data, model, tokenizer, cfg, _, _ = prepare_run(args)
    run = Run.create(args, data, tokenizer, cfg, torch.device("cpu"), out)
    before = val_maps(model, run)
    model.train()
    with torch.no_grad():
        for batch in run.loader("train", train=True):
            model(run.prepare_batch(batch, train=True))
    return before, val_maps(model, run)


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--run", type=Path, required=True, help="a run folder made with --init-from")
    args = p.parse_args(argv)
    recorded = json.loads((args.run / "args.json").read_text())
    if not recorded.get("init_from"):
        p.error(f"--run {args.run}: its args.json has no init_from (start from a trained model)")
    for batchnorm in ("train", "frozen"):
        with tempfile.TemporaryDirectory() as folder:
            before, after = probe(recorded, batchnorm, Path(folder) / "r")
        print(f"--image-batchnorm {batchnorm}: start {before}; after one training-mode pass "
              f"without weight updates {after}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
