"""Training images per second: JPEG files versus the uint8 cache, on this machine's CPU.

    python data.py demo --out cache/demo                   # once (or: python train.py --demo)
    python bench/bench_images.py                           # cache/demo/prepared, 224 and 64 px
    python bench/bench_images.py --data DIR --image-size 224 --batches 20

JPEG: data.HashingDataset's training transform (decode, Resize(int(S*1.143)), RandomCrop(S),
flip, normalise) through data.make_loader, num_workers 0. Cache: image_cache.CachedImageDataset
(memory-mapped uint8 squares) through image_cache.cached_loader, num_workers 0, then
image_cache.gpu_transform on the CPU (crop, flip, normalise). Both without text (images only).
The one-time cache build is timed separately. One run, no repeats: the ratio is indicative.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import torch

from cmh.data.caches.uint8_cache import (
    CachedImageDataset,
    cache_size,
    cached_loader,
    ensure_cache,
    gpu_transform,
)
from cmh.data.dataset import HashingDataset, make_loader
from cmh.data.prepared_folder import load_prepared
from cmh.utils.errors import UserError


def images_per_second(loader, batches: int, image_size: int, cached: bool) -> float:
    """Images/s over ``batches`` batches after one warm-up batch (the loader is cycled)."""
    it, done, t0 = iter(loader), 0, 0.0
    for i in range(batches + 1):
        if i == 1:
            t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        if cached:
            batch["image"] = gpu_transform(batch.pop("image_u8"), image_size, train=True)
        if i >= 1:
            done += batch["image"].shape[0]
    return done / (time.perf_counter() - t0)


def bench_size(data, size: int, batch_size: int, batches: int) -> dict:
    """{"build_s", "jpeg", "cache"} for one image size (images/s)."""
    t0 = time.perf_counter()
    ensure_cache(data, cache_size(size))
    build_s = time.perf_counter() - t0
    jpeg_ds = HashingDataset(data, "train", image_size=size, train=True)
    jpeg = make_loader(jpeg_ds, batch_size, shuffle=True, seed=0, drop_last=True)
    cached_ds = CachedImageDataset(data, "train", image_size=size, train=True)
    cached = cached_loader(cached_ds, batch_size, True, seed=0, drop_last=True, pin_memory=False)
    return {
        "build_s": build_s,
        "jpeg": images_per_second(jpeg, batches, size, cached=False),
        "cache": images_per_second(cached, batches, size, cached=True),
    }


def main(argv=None) -> int:
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__)
    p.add_argument("--data", default="cache/demo/prepared", help="prepared dataset folder")
    p.add_argument(
        "--image-size", type=int, nargs="+", default=[224, 64], help="training image sides"
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    p.add_argument("--batches", type=int, default=10, help="timed batches per row")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data = load_prepared(args.data)
    except UserError as e:
        print(f"error: {e} (the demo: python data.py demo --out cache/demo)", file=sys.stderr)
        return 2
    first = data.items[0]
    from PIL import Image

    with Image.open(data.image_path(first)) as im:
        source = f"{im.size[0]}x{im.size[1]} {im.format}"
    print(
        f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(
        f"data: {data.root}, {len(data.splits['train'])} training images (first: {source}); "
        f"batch {args.batch_size}, {args.batches} timed batches, num_workers 0"
    )
    print(f"{'size':>5} {'cache':>6} {'build s':>8} {'JPEG img/s':>11} {'cache img/s':>12} ratio")
    for size in args.image_size:
        r = bench_size(data, size, args.batch_size, args.batches)
        print(
            f"{size:>5} {cache_size(size):>6} {r['build_s']:>8.2f} {r['jpeg']:>11.1f} "
            f"{r['cache']:>12.1f} {r['cache'] / r['jpeg']:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
