"""Loading a prepared dataset for cross-modal hashing on IAPR TC-12.

A prepared folder is written once by the prepare step (``python data.py prepare ...`` or
``python prepare.py prepare ...``; see prepare.py for the on-disk format). This module only
reads it: :func:`load_prepared` -> :class:`PreparedData`, :class:`HashingDataset` (one split
as dicts of tensors), :func:`collate` and :func:`make_loader` (a seeded DataLoader).
:func:`main` is the prepare CLI, kept here so ``python data.py prepare|demo`` still works.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

import formats
from errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("query", "database", "train", "val")
log = logging.getLogger("data")


@dataclass
class PreparedData:
    """A prepared folder in memory. ``items`` are the manifest lines, sorted by id."""

    root: Path
    items: list[dict]
    label_names: list[str]
    splits: dict[str, list[int]]
    vocab: list[str]
    bow_width: int | None = None  # the lists' bag-of-words width; None: len(vocab)
    _index: dict[int, int] | None = field(default=None, repr=False, compare=False)

    def index_of(self) -> dict[int, int]:
        """{item id: row in ``items``} (built once)."""
        if self._index is None:
            self._index = {item["id"]: row for row, item in enumerate(self.items)}
        return self._index

    def rows(self, ids: list[int]) -> list[int]:
        """Rows in ``items`` of ``ids``; UserError naming an unknown id."""
        index = self.index_of()
        try:
            return [index[i] for i in ids]
        except KeyError as exc:
            raise UserError(f"item id {exc.args[0]} is not in {self.root}") from None

    def label_matrix(self, ids: list[int]) -> np.ndarray:
        """Multi-hot labels [len(ids), C] float32 in {0, 1}, rows in the order of ``ids``."""
        matrix = np.zeros((len(ids), len(self.label_names)), dtype=np.float32)
        for r, row in enumerate(self.rows(ids)):
            matrix[r, self.items[row]["labels"]] = 1.0
        return matrix

    def captions(self, ids: list[int]) -> list[str]:
        """Captions of ``ids``, in order."""
        return [self.items[row]["caption"] for row in self.rows(ids)]

    def image_path(self, item: dict) -> Path:
        """Image path of a manifest line (``image`` is relative to ``root``), ``..`` resolved
        lexically (as prepare's relative path was made), so messages show a plain path."""
        return Path(os.path.normpath(self.root / item["image"]))

    def bow_dim(self) -> int:
        """Bag-of-words width: the lists' width, else the vocabulary size."""
        return self.bow_width if self.bow_width is not None else len(self.vocab)


def _read_json(path: Path) -> Any:
    """Parse a JSON file; UserError naming the file if it is missing or broken."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; run `python data.py prepare ...` again") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (no line ends); UserError if missing."""
    if not path.is_file():
        raise UserError(f"{path}: missing; run `python data.py prepare ...` again")
    return path.read_text(encoding="utf-8").splitlines()


def _read_manifest(path: Path) -> list[dict]:
    """manifest.jsonl lines; UserError with file:line on a broken or incomplete line."""
    items = []
    for number, line in enumerate(_read_lines(path), start=1):
        try:
            item = json.loads(line)
            if not {"id", "image", "caption", "labels"} <= item.keys():
                raise ValueError("needs keys id, image, caption, labels")
        except ValueError as exc:
            raise UserError(f"{path}:{number}: bad manifest line ({exc})") from None
        items.append(item)
    return items


def _check_consistent(data: PreparedData, summary: dict) -> None:
    """UserError naming the file whose content disagrees with the others."""
    root, n_labels = data.root, len(data.label_names)
    ids = [item["id"] for item in data.items]
    if ids != sorted(set(ids)) or len(ids) != summary.get("items"):
        raise UserError(
            f"{root / 'manifest.jsonl'}: ids not unique and sorted, or item count "
            f"{len(ids)} != summary.json items {summary.get('items')}"
        )
    if n_labels != summary.get("labels"):
        raise UserError(
            f"{root / 'labels.txt'}: {n_labels} names, summary.json says {summary.get('labels')}"
        )
    bad = next((i for i in data.items if any(not 0 <= c < n_labels for c in i["labels"])), None)
    if bad is not None:
        raise UserError(
            f"{root / 'manifest.jsonl'}: item {bad['id']} has a label column "
            f"outside 0..{n_labels - 1}"
        )
    if not isinstance(data.splits, dict) or sorted(data.splits) != sorted(SPLITS):
        raise UserError(f"{root / 'splits.json'}: expected keys {', '.join(SPLITS)}")
    known = set(ids)
    for name, split in data.splits.items():
        unknown = [i for i in split if i not in known]
        if unknown:
            raise UserError(
                f"{root / 'splits.json'}: {name} holds id {unknown[0]}, "
                "which is not in manifest.jsonl"
            )


def load_prepared(root: str | Path) -> PreparedData:
    """Load a folder written by ``python data.py prepare``; UserError if it is not one."""
    root = Path(root)
    if not (root / "summary.json").is_file():
        raise UserError(
            f"{root} is not a prepared dataset (no summary.json); "
            "run `python data.py prepare ...` first"
        )
    summary = _read_json(root / "summary.json")
    data = PreparedData(
        root=root,
        items=_read_manifest(root / "manifest.jsonl"),
        label_names=_read_lines(root / "labels.txt"),
        splits=_read_json(root / "splits.json"),
        vocab=_read_lines(root / "vocab.txt"),
        bow_width=summary.get("bow_dim") if summary.get("source") == "lists" else None,
    )
    _check_consistent(data, summary)
    return data


# =========================================================================== torch dataset
def image_transform(image_size: int, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB -> FloatTensor [3, S, S], ImageNet-normalised.

    train: Resize(int(S * 1.143)) -> RandomCrop(S) -> horizontal flip; eval: Resize((S, S)).
    """
    from torchvision import transforms  # here: importing torchvision costs seconds

    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return transforms.Compose(
            [
                transforms.Resize(int(image_size * 1.143)),
                transforms.RandomCrop(image_size),
                transforms.RandomHorizontalFlip(),
                *norm,
            ]
        )
    return transforms.Compose([transforms.Resize((image_size, image_size)), *norm])


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode: grayscale, CMYK, palette and alpha by PIL; 16-bit grayscale scaled by
    1/257 first (PIL's own conversion clips it to 255, turning most of the image white)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        values = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255)
        image = Image.fromarray(np.round(values).astype(np.uint8))
    return image.convert("RGB")


def load_image(path: Path, item_id: int) -> Image.Image:
    """Open an image as RGB (see :func:`_to_rgb`); UserError naming the item and file if the file
    cannot be decoded (empty, truncated, not an image)."""
    try:
        with Image.open(path) as image:
            return _to_rgb(image)
    except Exception as exc:  # PIL raises OSError, SyntaxError, DecompressionBombError...
        raise UserError(
            f"item {item_id}: cannot read image {path} ({type(exc).__name__}: {exc}); replace "
            "the file, or prepare the data again with --check-images (the default) to drop it"
        ) from None


def sparse_bows(items: list[dict], vocab: list[str]) -> list[tuple[list[int], list[int]]]:
    """(indices, counts) per manifest line: the lists' vector where the line has one, else
    the caption's bag of words over ``vocab``."""
    index = {word: i for i, word in enumerate(vocab)}
    return [
        (item["bow"]["indices"], item["bow"]["counts"])
        if "bow" in item
        else formats.bow_vector(item["caption"], index)
        for item in items
    ]


def tokenize_captions(tokenizer: Any, captions: list[str], max_length: int):
    """(token ids per caption, each at most ``max_length`` long; number of captions cut short).

    One tokenizer call: ``truncation=True`` with ``return_overflowing_tokens=True``, so a fast
    tokenizer returns each cut caption's rest as extra rows (``overflow_to_sample_mapping``);
    the first row of each caption is exactly what plain truncation gives.
    """
    if not captions:
        return [], 0
    encoded = tokenizer(
        captions, truncation=True, max_length=max_length, return_overflowing_tokens=True
    )
    mapping = encoded.get("overflow_to_sample_mapping")
    if mapping is None:  # a slow tokenizer: one row per caption, cut counts in num_truncated_tokens
        cut = encoded.get("num_truncated_tokens") or []
        return list(encoded["input_ids"]), sum(1 for n in cut if n > 0)
    rows: dict[int, list[int]] = {}
    for row, sample in enumerate(mapping):
        rows.setdefault(int(sample), encoded["input_ids"][row])
    # each caption has one row, plus one per overflowing piece: extra rows mark the cut captions
    cut = {int(sample) for row, sample in enumerate(mapping) if row and mapping[row - 1] == sample}
    return [rows[i] for i in range(len(captions))], len(cut)


class HashingDataset(Dataset):
    """One split of a prepared dataset; items are dicts of tensors.

    ``__getitem__`` -> {"image": [3, S, S] float (if images), "input_ids": [L] long (if a
    tokenizer), "labels": [C] float {0, 1}, "bow": [V] float counts (if bow), "index": id}.
    Captions are tokenized once here (:func:`tokenize_captions`), never per step; those longer
    than ``max_length`` tokens are cut, counted in ``n_truncated`` and the count is logged (INFO,
    logger "data").
    """

    def __init__(
        self,
        data: PreparedData,
        split: str,
        tokenizer: Any = None,
        max_length: int = 64,
        image_size: int = 224,
        train: bool = False,
        bow: bool = False,
        images: bool = True,
    ) -> None:
        if split not in data.splits:
            raise UserError(f"unknown split {split!r}; {data.root} has {', '.join(data.splits)}")
        self.ids = list(data.splits[split])
        items = [data.items[row] for row in data.rows(self.ids)]
        self.labels = torch.from_numpy(data.label_matrix(self.ids))  # [N, C]
        self.paths = [data.image_path(item) for item in items] if images else None
        self.transform = image_transform(image_size, train) if images else None
        self.input_ids, self.n_truncated = None, 0
        if tokenizer is not None:
            captions = [item["caption"] for item in items]
            self.input_ids, self.n_truncated = tokenize_captions(tokenizer, captions, max_length)
            if self.n_truncated:
                log.info(
                    "%s: %d of %d captions truncated to --max-length %d tokens",
                    split,
                    self.n_truncated,
                    len(captions),
                    max_length,
                )
        self.bow_dim = data.bow_dim()
        self.bow = sparse_bows(items, data.vocab) if bow else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {"labels": self.labels[i], "index": self.ids[i]}
        if self.paths is not None:
            out["image"] = self.transform(load_image(self.paths[i], self.ids[i]))
        if self.input_ids is not None:
            out["input_ids"] = torch.tensor(self.input_ids[i], dtype=torch.long)
        if self.bow is not None:
            vector = torch.zeros(self.bow_dim)
            indices, counts = self.bow[i]
            vector[torch.tensor(indices, dtype=torch.long)] = torch.tensor(
                counts, dtype=torch.float
            )
            out["bow"] = vector
        return out


def collate(batch: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Stack a list of items: "image" [B, 3, S, S], "labels" [B, C], "bow" [B, V],
    "input_ids" [B, L] padded with ``pad_id`` to the longest in the batch plus
    "attention_mask" [B, L] (1 = token, 0 = padding), "index" [B] long."""
    out = {
        k: torch.stack([b[k] for b in batch]) for k in ("image", "labels", "bow") if k in batch[0]
    }
    if "input_ids" in batch[0]:
        length = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for r, b in enumerate(batch):
            ids[r, : len(b["input_ids"])] = b["input_ids"]
            mask[r, : len(b["input_ids"])] = 1
        out["input_ids"], out["attention_mask"] = ids, mask
    out["index"] = torch.tensor([b["index"] for b in batch], dtype=torch.long)
    return out


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed numpy and random from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    pad_id: int = 0,
    sampler: Sampler | None = None,
    collate_fn: Callable = collate,
    pin_memory: bool = False,
) -> DataLoader:
    """A seeded DataLoader over ``dataset`` with ``collate_fn`` (default :func:`collate`; same
    seed -> same order). ``sampler`` (e.g. a DistributedSampler) replaces ``shuffle`` when given;
    workers, if any, persist across epochs."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=functools.partial(collate_fn, pad_id=pad_id),
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


# =========================================================================== CLI
def prepare(args: argparse.Namespace) -> dict:
    """:func:`prepare.prepare` (read, drop, split, write ``args.out``); returns the summary."""
    from prepare import prepare as run_prepare  # here: prepare.py imports this module

    return run_prepare(args)


def main(argv: list[str] | None = None) -> int:
    """The prepare CLI (``prepare`` and ``demo`` subcommands): :func:`prepare.main`.

    Returns 0 on success, 2 after printing ``error: MESSAGE`` for a UserError.
    """
    from prepare import main as prepare_main  # here: prepare.py imports this module

    return prepare_main(argv)


if __name__ == "__main__":
    sys.exit(main())
