"""Time one training step of the two towers (forward, loss, backward, Adam step) on this machine.

    python bench/bench_train_step.py                       # demo-size model, synthetic batch
    python bench/bench_train_step.py --data cache/demo/prepared   # also with the real data loader

Demo size: ResNet-18 at 64 px (random init) and the tiny BERT of `--text-model tiny`, 32 bits,
batch 32. Prints ms per step and pairs/s with the data loader excluded (a fixed batch in memory)
and, with --data, included (images decoded, augmented and captions collated every step).
"""

from __future__ import annotations

import os
import platform
import sys

import torch
from step_timing import WORDS, synthetic_batch, time_steps  # bench/step_timing.py, beside this file

from cmh.models.hashers import ModelConfig, build_model


def loader_batches(data_dir: str, tokenizer, cfg: ModelConfig, batch_size: int):
    """An endless iterator of training batches from a prepared dataset."""
    from cmh.data.dataset import HashingDataset, make_loader
    from cmh.data.prepared_folder import load_prepared

    data = load_prepared(data_dir)
    ds = HashingDataset(
        data,
        "train",
        tokenizer=tokenizer,
        max_length=cfg.max_length,
        image_size=cfg.image_size,
        train=True,
    )
    loader = make_loader(
        ds, batch_size, shuffle=True, seed=0, drop_last=True, pad_id=tokenizer.pad_token_id
    )
    while True:
        yield from loader


def main(argv=None) -> int:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__)
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    p.add_argument("--image-size", type=int, default=64, help="image side (demo: 64)")
    p.add_argument("--bits", type=int, default=32, help="code length")
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--data", help="prepared dataset: also time with the data loader included")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(
        bits=args.bits,
        image_weights="none",
        image_size=args.image_size,
        text_model="tiny",
        max_length=48,
    )
    model, tokenizer = build_model(cfg, captions=[" ".join(WORDS)] * 4)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4)
    margin = 12.0 * args.bits / 32
    print(
        f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(
        f"model: ResNet-18 at {args.image_size} px + tiny BERT, {args.bits} bits, "
        f"batch {args.batch_size}, median of {args.steps} steps"
    )
    fixed = synthetic_batch(tokenizer, args.batch_size, args.image_size, 30, seed=0)
    rows = [
        (
            "data loading excluded (fixed batch)",
            time_steps(model, optimizer, iter(lambda: fixed, None), margin, args.steps),
        )
    ]
    if args.data:
        batches = loader_batches(args.data, tokenizer, cfg, args.batch_size)
        rows.append(
            (
                "data loading included (JPEG decode, augment, collate)",
                time_steps(model, optimizer, batches, margin, args.steps),
            )
        )
    for name, seconds in rows:
        print(f"{name:<55} {seconds * 1e3:8.1f} ms/step  {args.batch_size / seconds:8.1f} pairs/s")
    if len(rows) == 2:
        print(f"ratio included / excluded: {rows[1][1] / rows[0][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
