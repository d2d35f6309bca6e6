"""One training step (forward, triplet loss, backward, Adam step) per image backbone at demo size.

    python bench/bench_backbones.py [--models resnet18 resnet50 vit_b_16 timm:efficientnet_lite0 clip:tiny]

Each model: random weights, 64 px images (the demo's), 32 bits, batch 32, the tiny BERT as the
text tower (``clip:tiny``: both towers from the tiny CLIP of ``--clip-model tiny``), a fixed
synthetic batch (bench/bench_train_step.py), median of --steps steps after 2 warm-up steps, all
in one process one after the other, so the ratios to the first model are comparable.
"""

from __future__ import annotations

import os
import platform
import sys

import torch
from step_timing import WORDS, synthetic_batch, time_steps

from cmh.models.hashers import ModelConfig, build_model

DEFAULT_MODELS = ["resnet18", "resnet50", "vit_b_16", "timm:efficientnet_lite0", "clip:tiny"]


def config(name: str, image_size: int, bits: int) -> ModelConfig:
    common = {"bits": bits, "image_weights": "none", "image_size": image_size, "max_length": 48}
    if name.startswith("clip:"):
        clip = name.removeprefix("clip:")
        return ModelConfig(image_encoder="clip", text_encoder="clip", clip_model=clip,
                           image_norm="clip", **common)  # fmt: skip
    return ModelConfig(image_encoder=name, text_model="tiny", **common)


def measure(name: str, args) -> tuple[float, int]:
    """(seconds per step, trainable parameters) of one backbone."""
    torch.manual_seed(0)
    model, tokenizer = build_model(config(name, args.image_size, args.bits), [" ".join(WORDS)] * 4)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4)
    batch = synthetic_batch(tokenizer, args.batch_size, args.image_size, 40, seed=0)
    seconds = time_steps(
        model, optimizer, iter(lambda: batch, None), 12.0 * args.bits / 32, args.steps
    )
    return seconds, sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv=None) -> int:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="image backbones to time")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    p.add_argument("--image-size", type=int, default=64, help="image side (demo: 64)")
    p.add_argument("--bits", type=int, default=32, help="code length")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    args = p.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        f"batch {args.batch_size}, {args.image_size} px, {args.bits} bits, median of {args.steps}"
    )
    print("| image backbone | parameters | ms/step | ratio to the first |")
    print("|---|---:|---:|---:|")
    first = None
    for name in args.models:
        seconds, params = measure(name, args)
        first = first or seconds
        print(f"| {name} | {params / 1e6:.1f} M | {seconds * 1e3:.1f} | {seconds / first:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
