"""One split of a prepared dataset as a torch Dataset, its collate function and seeded loader.

Items are dicts holding both modalities (see :class:`HashingDataset`); captions are tokenized
once when the dataset is built, never per step.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cmh.data.bag_of_words import bow_vector
from cmh.data.caches.image_array import ImageArray, load_item_image
from cmh.data.image_transforms import image_transform, item_generator
from cmh.data.prepared_folder import PreparedData
from cmh.utils.errors import UserError

log = logging.getLogger("data")


def sparse_bows(items: list[dict], vocab: list[str]) -> list[tuple[list[int], list[int]]]:
    """(indices, counts) per manifest line: the lists' vector where the line has one, else
    the caption's bag of words over ``vocab``."""
    index = {word: i for i, word in enumerate(vocab)}
    return [
        (item["bow"]["indices"], item["bow"]["counts"])
        if "bow" in item
        else bow_vector(item["caption"], index)
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


_TRUNCATION_REPORTED: set[tuple] = set()  # (data, split, max_length, count) already logged


def reset_truncation_reports() -> None:
    """Start of a run: its log reports each split's truncated captions once again."""
    _TRUNCATION_REPORTED.clear()


class HashingDataset(Dataset):
    """One split of a prepared dataset; items are dicts of tensors.

    ``__getitem__`` -> {"image": [3, S, S] float (if images), "input_ids": [L] long (if a
    tokenizer), "labels": [C] float {0, 1}, "bow": [V] float counts (if bow), "index": id}.
    Images come from files or from rows of the folder's uint8 array (:mod:`cmh.data.caches.image_array`).
    Captions are tokenized once here (:func:`tokenize_captions`), never per step; those longer
    than ``max_length`` tokens are cut, counted in ``n_truncated`` and the count is logged (INFO,
    logger "data"), once per split and run (:func:`reset_truncation_reports`).
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
        seed: int = 0,
        framing: str = "squash-crop",
        norm: str = "imagenet",
    ) -> None:
        if split not in data.splits:
            raise UserError(f"unknown split {split!r}; {data.root} has {', '.join(data.splits)}")
        self.ids = list(data.splits[split])
        items = [data.items[row] for row in data.rows(self.ids)]
        self.labels = torch.from_numpy(data.label_matrix(self.ids))  # [N, C]
        self.paths = [data.image_path(item) for item in items] if images else None
        self.moved_hint = data.moved_hint()
        self._arrays: dict[Path, ImageArray] = {}  # image arrays opened (cmh.data.caches.image_array)
        self.transform = image_transform(image_size, train, framing, norm) if images else None
        self.seed = seed
        self.input_ids, self.n_truncated = None, 0
        self.caption_choices: dict[int, list[list[int]]] = {}
        if tokenizer is not None:
            self._tokenize(str(data.root), split, items, tokenizer, max_length, train)
        self.bow_dim = data.bow_dim()
        self.bow = sparse_bows(items, data.vocab) if bow else None

    def _tokenize(
        self, root: str, split: str, items: list[dict], tokenizer: Any, max_length: int, train: bool
    ) -> None:
        """Captions tokenized once: ``input_ids`` holds each item's first caption (all that
        evaluation reads); for training, ``caption_choices`` {i: token ids of every caption}
        of the items with several (``captions``: COCO), one of which each step draws."""
        groups = [
            (item.get("captions") or [item["caption"]]) if train else [item["caption"]]
            for item in items
        ]
        flat = [caption for group in groups for caption in group]
        rows, self.n_truncated = tokenize_captions(tokenizer, flat, max_length)
        starts = np.cumsum([0] + [len(group) for group in groups]).tolist()
        self.input_ids = [rows[start] for start in starts[:-1]]
        self.caption_choices = {
            i: rows[starts[i] : starts[i + 1]] for i, group in enumerate(groups) if len(group) > 1
        }
        reported = (root, split, max_length, self.n_truncated)
        if self.n_truncated and reported not in _TRUNCATION_REPORTED:
            _TRUNCATION_REPORTED.add(reported)  # once per split, not at every validation
            log.info(
                "%s: %d of %d captions truncated to --max-length %d tokens",
                split,
                self.n_truncated,
                len(flat),
                max_length,
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Item ``key``, or ``key = (epoch, i)`` (from :class:`EpochSampler`): then a training
        image's crop and flip, and which of several captions it trains on, are drawn from
        (seed, epoch, item id) alone."""
        epoch, i = key if isinstance(key, tuple) else (None, key)
        out: dict[str, Any] = {"labels": self.labels[i], "index": self.ids[i]}
        if self.paths is not None:
            g = None if epoch is None else item_generator(self.seed, epoch, self.ids[i])
            image = load_item_image(self.paths[i], self.ids[i], self._arrays, self.moved_hint)
            out["image"] = self.transform(image, g)
        if self.input_ids is not None:
            tokens, choices = self.input_ids[i], self.caption_choices.get(i)
            if choices and epoch is not None:
                g = item_generator(self.seed, epoch, self.ids[i], stream=1)
                tokens = choices[int(torch.randint(len(choices), (1,), generator=g))]
            out["input_ids"] = torch.tensor(tokens, dtype=torch.long)
        if self.bow is not None:
            vector = torch.zeros(self.bow_dim)
            indices, counts = self.bow[i]
            vector[torch.tensor(indices, dtype=torch.long)] = torch.tensor(
                counts, dtype=torch.float
            )
            out["bow"] = vector
        return out


class EpochSampler(Sampler):
    """A sampler's indices as (epoch, index) pairs, for :class:`HashingDataset`: the epoch
    travels with each index to the worker processes (persistent ones too), so augmentation is a
    function of (seed, epoch, item) for any number of workers and after any resume.
    ``set_epoch`` is passed on to the wrapped sampler (a DistributedSampler's shuffling order)."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def collate(batch: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Stack a list of items: "image" [B, 3, S, S], "labels" [B, C], "bow" [B, V],
    "input_ids" [B, L] padded with ``pad_id`` to the longest in the batch plus
    "attention_mask" [B, L] (1 = token, 0 = padding), "index" [B] long."""
    out = {
        k: torch.stack([b[k] for b in batch]) for k in ("image", "labels", "bow") if k in batch[0]
    }
    if "input_ids" in batch[0]:
        out["input_ids"], out["attention_mask"] = pad_tokens([b["input_ids"] for b in batch], pad_id)
    out["index"] = torch.tensor([b["index"] for b in batch], dtype=torch.long)
    return out


def pad_tokens(rows, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id sequences (lists or tensors) -> (ids [B, L] padded with ``pad_id`` on the right
    to the longest, attention mask [B, L]: 1 = token, 0 = padding)."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[r, : len(row)] = 1
    return ids, mask


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
