"""A prepared dataset folder, read and checked: the one on-disk standard every script reads.

Written once by the prepare step (``python data.py prepare``, :mod:`cmh.data.prepare`):
``manifest.jsonl`` (one item per line, sorted by id: ``id``, ``image`` relative to the folder
or ``{"array", "row"}`` of the folder's uint8 image array (:mod:`cmh.data.caches.image_array`), ``caption``,
``captions`` when an item has several, ``labels`` as label columns, ``bow`` for the lists and
bag-of-words .mat input), ``labels.txt``,
``splits.json`` (query / database / train / val ids), ``vocab.txt`` and ``summary.json``
(written last: it marks the folder complete). :func:`load_prepared` re-checks everything it
reads, the split's protocol included (:func:`cmh.data.splits.check_splits`), whatever wrote it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmh.data.caches import image_array
from cmh.data.splits import check_splits
from cmh.utils.errors import UserError

BOW_SOURCES = ("lists", "mat")  # inputs whose bag-of-words width is summary.json's bow_dim


@dataclass
class PreparedData:
    """A prepared folder in memory. ``items`` are the manifest lines, sorted by id."""

    root: Path
    items: list[dict]
    label_names: list[str]
    splits: dict[str, list[int]]
    vocab: list[str]
    bow_width: int | None = None  # the lists' bag-of-words width; None: len(vocab)
    prepared_at: str | None = None  # summary.json's: where the folder was prepared
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
        lexically (as prepare's relative path was made), so messages show a plain path. An
        image held in the folder's uint8 array (``{"array", "row"}``) gives the reference
        ``ROOT/ARRAY#ROW`` (:func:`cmh.data.caches.image_array.ref_path`), which the loaders read back."""
        if isinstance(item["image"], dict):
            return image_array.ref_path(self.root, item["image"])
        return Path(os.path.normpath(self.root / item["image"]))

    def moved_hint(self) -> str:
        """What to tell a user whose image is missing when the folder was moved away from its
        images (prepared elsewhere; the image paths are relative to it); "" otherwise."""
        if self.prepared_at is None or self.prepared_at == str(self.root.resolve()):
            return ""
        return (
            f"; {self.root} was prepared at {self.prepared_at} and has moved since (its image "
            "paths are relative to it): move it back, or point it at the images from where it "
            f"is now with `python data.py relocate --data {self.root}`"
        )

    def has_captions(self) -> bool:
        """Whether the items carry text as strings (a bag-of-words .mat set has none)."""
        return any(item["caption"] for item in self.items)

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
    check_splits(data.splits, set(ids), root / "splits.json")
    image_array.check_items(root, data.items, root / "manifest.jsonl")


def check_prepared_folder(root: str | Path) -> None:
    """UserError unless ``root`` is a folder written by ``python data.py prepare`` (cheap: one
    stat; load_prepared reads and checks the rest)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"{root}: no such folder; prepare a dataset there first "
            f"(`python data.py prepare ... --out {root}`, docs/data.md)"
        )
    if not (root / "summary.json").is_file():
        raise UserError(
            f"{root} is not a prepared dataset (no summary.json); "
            "run `python data.py prepare ...` first"
        )


def load_prepared(root: str | Path) -> PreparedData:
    """Load a folder written by ``python data.py prepare``; UserError if it is not one."""
    root = Path(root)
    check_prepared_folder(root)
    summary = _read_json(root / "summary.json")
    data = PreparedData(
        root=root,
        items=_read_manifest(root / "manifest.jsonl"),
        label_names=_read_lines(root / "labels.txt"),
        splits=_read_json(root / "splits.json"),
        vocab=_read_lines(root / "vocab.txt"),
        bow_width=summary.get("bow_dim") if summary.get("source") in BOW_SOURCES else None,
        prepared_at=summary.get("prepared_at"),
    )
    _check_consistent(data, summary)
    return data


def check_text_encoder(data: PreparedData, text_encoder: str) -> None:
    """UserError when ``text_encoder`` reads strings (bert) but ``data`` holds its text only as a
    bag of words (a DCMH .mat set): it names the encoder that fits."""
    if text_encoder == "bert" and not data.has_captions():
        raise UserError(
            f"--text-encoder bert needs captions, but {data.root} holds its text as a bag of "
            f"words ({data.bow_dim()} columns, no captions): train with --text-encoder bow"
        )
