"""A one-time uint8 cache of the dataset's images, and the augmentation done on the batch's device.

    cache = ensure_cache(data, cache_size(image_size))        # DATA/image_cache/<Sc>.u8 + .json
    ds = CachedImageDataset(data, "train", tokenizer=tok, image_size=S, train=True)
    loader = cached_loader(ds, batch_size, shuffle=True, seed=0)
    batch["image"] = gpu_transform(batch.pop("image_u8").to(dev, non_blocking=True), S, train=True)

The cache holds every manifest item decoded once (PIL, RGB as cmh.data.image_transforms.load_image) and resized to a
fixed square Sc x Sc, Sc = int(S * 1.143) (the size cmh.data.image_transforms.image_transform resizes to before its
random crop), as a raw memory-mapped uint8 array [N, 3, Sc, Sc] in manifest order, plus a JSON
with the ids, the shape and the manifest's sha256. Both files are written under a temporary name
and renamed; the JSON is written last, so a cache is valid only when complete. A changed manifest
(other sha256), size or item count rebuilds it.

How the cached path differs from the JPEG path (cmh.data.dataset.HashingDataset):
- training: JPEG resizes the shorter side to Sc keeping the aspect ratio, then crops S x S anywhere
  in the (wider) image; the cache squashes the whole image to Sc x Sc (aspect not kept), then
  crops S x S. For IAPR's 4:3 photos a cached crop sees more of the width, squashed by 3/4. Crop
  offsets are uniform over all valid positions and the flip has probability 1/2 in both paths.
- evaluation: JPEG resizes once, original -> S x S (PIL bilinear, antialiased, rounded to uint8);
  the cache resizes twice, original -> Sc x Sc (PIL, uint8) -> S x S (torch bilinear, antialiased,
  float, no rounding). tests/data/test_image_cache.py bounds the difference on generated images.
Checkpoints are the same either way; evaluate.py (a checkpoint alone) always uses the JPEG path.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cmh.data.caches.image_array import load_item_image
from cmh.data.dataset import HashingDataset, collate, make_loader
from cmh.data.image_transforms import RESIZE_FACTOR, norm_stats
from cmh.data.prepared_folder import PreparedData
from cmh.utils import progress
from cmh.utils.atomic_io import atomic_path, write_text_atomic
from cmh.utils.errors import UserError

log = logging.getLogger("image_cache")


def cache_size(image_size: int) -> int:
    """Side Sc of the cached squares for training/evaluation images of side ``image_size``."""
    return int(image_size * RESIZE_FACTOR)


def cache_paths(root: Path, size: int) -> tuple[Path, Path]:
    """(array file, JSON file) of the cache of side ``size`` beside the prepared folder ``root``."""
    folder = Path(root) / "image_cache"
    return folder / f"{size}.u8", folder / f"{size}.json"


def manifest_sha256(root: Path) -> str:
    return hashlib.sha256((Path(root) / "manifest.jsonl").read_bytes()).hexdigest()


class _Decode(Dataset):
    """Item rows -> uint8 [3, size, size] (PIL bilinear square resize), for parallel decoding;
    files and rows of the folder's image array (cmh.data.caches.image_array) alike."""

    def __init__(self, data: PreparedData, size: int) -> None:
        self.data, self.size, self.arrays = data, size, {}
        self.moved_hint = data.moved_hint()  # once, not per image

    def __len__(self) -> int:
        return len(self.data.items)

    def __getitem__(self, row: int) -> torch.Tensor:
        from PIL import Image

        item = self.data.items[row]
        image = load_item_image(self.data.image_path(item), item["id"], self.arrays, self.moved_hint)
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())


def _valid_meta(meta_path: Path, array_path: Path, data: PreparedData, size: int) -> dict | None:
    """The cache's JSON if it matches ``data`` and ``size`` and the array file is complete."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    shape = [len(data.items), 3, size, size]
    ids = [item["id"] for item in data.items]
    ok = (
        meta.get("shape") == shape
        and meta.get("ids") == ids
        and meta.get("manifest_sha256") == manifest_sha256(data.root)
        and array_path.is_file()
        and array_path.stat().st_size == int(np.prod(shape))
    )
    return meta if ok else None


def build_cache(data: PreparedData, size: int, num_workers: int = 0) -> dict:
    """Decode and resize every manifest item into ``cache_paths(data.root, size)``; returns the
    JSON written. Temporary names then renames: readers never see a partial cache."""
    array_path, meta_path = cache_paths(data.root, size)
    array_path.parent.mkdir(parents=True, exist_ok=True)
    shape = (len(data.items), 3, size, size)
    with atomic_path(array_path) as tmp_array:
        array = np.memmap(tmp_array, dtype=np.uint8, mode="w+", shape=shape)
        # its own generator: building the cache draws nothing from the global RNG, so a run that
        # builds it trains exactly like one that finds it built
        loader = DataLoader(_Decode(data, size), batch_size=64, num_workers=num_workers,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
        row = 0
        for batch in progress.long_step(loader, f"image cache {size}px"):
            array[row : row + len(batch)] = batch.numpy()
            row += len(batch)
        array.flush()
        del array
    meta = {
        "ids": [item["id"] for item in data.items],
        "shape": list(shape),
        "dtype": "uint8",
        "layout": "NCHW",
        "manifest_sha256": manifest_sha256(data.root),
    }
    write_text_atomic(meta_path, json.dumps(meta) + "\n")
    log.info("image cache %s: %d images of %dx%d", array_path, shape[0], size, size)
    return meta


def ensure_cache(data: PreparedData, size: int, num_workers: int = 0) -> tuple[Path, dict]:
    """(array path, JSON) of a valid cache of side ``size``; built (or rebuilt) when missing or
    stale (manifest changed, other size or items)."""
    if size < 1:
        raise UserError(f"image cache size must be >= 1 pixel, got {size}")
    array_path, meta_path = cache_paths(data.root, size)
    meta = _valid_meta(meta_path, array_path, data, size)
    if meta is None:
        log.info("building the image cache %s (once)", array_path)
        meta = build_cache(data, size, num_workers)
    return array_path, meta


class CachedImageDataset(HashingDataset):
    """cmh.data.dataset.HashingDataset without decoding: "image_u8" uint8 [3, Sc, Sc] from the cache plus the
    same "input_ids", "labels", "bow", "index" keys. Sc = cache_size(image_size). The memory map
    is opened lazily in each process (DataLoader workers included), never pickled."""

    def __init__(
        self,
        data: PreparedData,
        split: str,
        tokenizer: Any = None,
        max_length: int = 64,
        image_size: int = 224,
        train: bool = False,
        bow: bool = False,
        build_workers: int = 0,
    ) -> None:
        super().__init__(data, split, tokenizer, max_length, image_size, train, bow, images=False)
        self.image_size, self.train = image_size, train
        self.array_path, meta = ensure_cache(data, cache_size(image_size), build_workers)
        self.shape = tuple(meta["shape"])
        self.rows = data.rows(self.ids)
        self._array: np.memmap | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Item ``key`` or ``(epoch, i)`` (cmh.data.dataset.EpochSampler: which caption of several
        trains this epoch); the image is the cached square, augmented later on the device."""
        if self._array is None:
            self._array = np.memmap(self.array_path, dtype=np.uint8, mode="r", shape=self.shape)
        out = super().__getitem__(key)
        i = key[1] if isinstance(key, tuple) else key
        out["image_u8"] = torch.from_numpy(np.array(self._array[self.rows[i]]))
        return out


def collate_cached(batch: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """cmh.data.dataset.collate plus "image_u8" stacked to uint8 [B, 3, Sc, Sc]."""
    out = collate(batch, pad_id)
    out["image_u8"] = torch.stack([b["image_u8"] for b in batch])
    return out


def cached_loader(
    dataset: CachedImageDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    pad_id: int = 0,
    sampler: Sampler | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """cmh.data.dataset.make_loader's seeded loader for a CachedImageDataset; pinned memory (default: when
    CUDA is available) and persistent workers (when ``num_workers`` > 0)."""
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    return make_loader(
        dataset,
        batch_size,
        shuffle,
        seed,
        num_workers=num_workers,
        drop_last=drop_last,
        pad_id=pad_id,
        sampler=sampler,
        collate_fn=collate_cached,
        pin_memory=pin,
    )


def _crop_flip(x: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample random S x S crop and horizontal flip (p = 1/2) of uint8 [B, 3, Sc, Sc].
    Offsets and flips are drawn on the CPU (no device sync: top, left, then flip); the crops and
    flips are then one gather on the batch's device, whatever B (no kernel per sample)."""
    b, c, sc, _ = x.shape
    top = torch.randint(0, sc - size + 1, (b,), generator=generator)
    left = torch.randint(0, sc - size + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    step = torch.arange(size)
    rows = top[:, None] + step  # [B, S]
    cols = left[:, None] + torch.where(
        flip[:, None], size - 1 - step, step
    )  # mirrored when flipped
    rows, cols = rows.to(x.device, non_blocking=True), cols.to(x.device, non_blocking=True)
    samples = torch.arange(b, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return x[samples, channels, rows[:, None, :, None], cols[:, None, None, :]]


def gpu_transform(
    u8_batch: torch.Tensor,
    image_size: int,
    train: bool,
    generator: torch.Generator | None = None,
    framing: str = "squash-crop",
    norm: str = "imagenet",
) -> torch.Tensor:
    """uint8 [B, 3, Sc, Sc] -> normalised float32 [B, 3, S, S], on the batch's device.

    train, ``squash-crop``: a random S x S crop and a horizontal flip (p = 1/2), drawn per sample
    from ``generator``, a CPU generator (None: torch's default CPU generator, which train.py's
    checkpoints save, so a resumed run draws the same crops); train, ``squash``: the resize to
    S x S, then the flip; eval: a bilinear, antialiased resize to S x S (no randomness).
    Values: (x / 255 - mean) / std with the ``norm`` statistics (cmh.config.recipes.norm_stats).
    """
    if u8_batch.dtype != torch.uint8 or u8_batch.dim() != 4 or u8_batch.shape[1] != 3:
        raise ValueError(
            f"expected uint8 [B, 3, H, W], got {u8_batch.dtype} {list(u8_batch.shape)}"
        )
    sc = u8_batch.shape[-1]
    if train and framing == "squash":
        x = _resize(u8_batch.float(), image_size)
        flip = (torch.rand(len(x), generator=generator) < 0.5).nonzero().flatten().to(x.device)
        x[flip] = x[flip].flip(-1)
    elif train:
        if u8_batch.shape[-2] != sc or sc < image_size:
            raise ValueError(f"training crop {image_size} needs square images >= it, got {sc}")
        x = _crop_flip(u8_batch, image_size, generator).float()
    else:
        x = _resize(u8_batch.float(), image_size)
    mean, std = (torch.tensor(v, device=x.device).view(1, 3, 1, 1) * 255 for v in norm_stats(norm))
    return (x - mean) / std


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of float [B, 3, H, W] to S x S (none when already S x S)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
