"""Images held in a benchmark file, stored once in the prepared folder as a raw uint8 array.

    DATA/images-<digest>.u8     uint8 [N, 3, H, W] (NCHW, RGB: the image cache's layout), C order;
                                row r holds the r-th manifest line's pixels
    DATA/images-<digest>.json   {"shape": [N, 3, H, W], "dtype": "uint8", "layout": "NCHW",
                                 "sha256": of the array's bytes}

``<digest>`` is the start of that sha256, so the manifest, which names the array, changes
whenever the pixels do: the image cache and the frozen-feature cache key on the manifest and
never reuse stale pixels. A manifest line points at its pixels with
``"image": {"array": "images-<digest>.u8", "row": r}``; :func:`ref_path` shows that as the
reference ``DATA/images-<digest>.u8#r`` (what ``PreparedData.image_path`` returns and
retrieve.py's index lists), and :func:`load_item_image` / :func:`open_ref` read it back. The
pixels are the file's own, never re-encoded; normalisation is done at load time, as for files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cmh.utils import progress
from cmh.utils.atomic_io import write_text_atomic
from cmh.utils.errors import UserError

REF = re.compile(r"^(?P<array>.+\.u8)#(?P<row>\d+)$")  # DATA/images-<digest>.u8#row
PARTIAL = "images.u8.partial"  # the array while it is written, inside the staging folder


def ref_path(root: Path, image: dict) -> Path:
    """``root/ARRAY#ROW`` of a manifest ``image`` field ``{"array": ARRAY, "row": ROW}``."""
    return Path(os.path.normpath(Path(root) / f"{image['array']}#{int(image['row'])}"))


def parse_ref(path: str | Path) -> tuple[Path, int] | None:
    """(array file, row) of a reference made by :func:`ref_path`; None for a plain file path."""
    match = REF.match(str(path))
    return None if match is None else (Path(match["array"]), int(match["row"]))


def meta_path(array_path: Path) -> Path:
    """The JSON written beside an array file."""
    return Path(array_path).with_suffix(".json")


def write_array(
    folder: Path, blocks: Iterable[np.ndarray], n: int, height: int, width: int
) -> dict:
    """Stream uint8 RGB blocks [<= B, H, W, 3] (``n`` items in all) into ``folder`` as
    ``images-<digest>.u8`` (NCHW) plus its JSON; returns the JSON. Only one block is in memory
    at a time; the array is written under a temporary name and renamed once complete."""
    partial = Path(folder) / PARTIAL
    digest, written = hashlib.sha256(), 0
    with open(partial, "wb") as out, progress.bar(None, "copy images", total=n) as bar:
        for block in blocks:
            if block.shape[1:] != (height, width, 3) or block.dtype != np.uint8:
                raise ValueError(f"expected uint8 [B, {height}, {width}, 3], got {block.shape}")
            data = np.ascontiguousarray(block.transpose(0, 3, 1, 2)).data
            digest.update(data)
            out.write(data)
            written += len(block)
            bar.update(len(block))
    if written != n:
        raise ValueError(f"expected {n} images, the blocks held {written}")
    meta = {
        "shape": [n, 3, height, width],
        "dtype": "uint8",
        "layout": "NCHW",
        "sha256": digest.hexdigest(),
    }
    array = Path(folder) / f"images-{meta['sha256'][:16]}.u8"
    os.replace(partial, array)
    write_text_atomic(meta_path(array), json.dumps(meta) + "\n")
    return {"file": array.name, **meta}


def read_meta(array_path: Path) -> dict:
    """The JSON of an array file, checked against the file's size; UserError naming the file."""
    path = meta_path(array_path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        shape = tuple(int(s) for s in meta["shape"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: missing or unreadable ({exc}); prepare the data again") from None
    size = array_path.stat().st_size if array_path.is_file() else None
    if len(shape) != 4 or shape[1] != 3 or size != int(np.prod(shape)):
        raise UserError(
            f"{array_path}: {size if size is not None else 'no'} bytes, but {path} says uint8 "
            f"{list(shape)}; the array is incomplete or foreign: prepare the data again"
        )
    return {**meta, "shape": shape}


class ImageArray:
    """One array file, memory-mapped read-only on first use in each process (never pickled)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.shape = read_meta(self.path)["shape"]
        self._map: np.memmap | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_map": None}

    def pixels(self, row: int) -> np.ndarray:
        """uint8 [H, W, 3] RGB of ``row``; UserError if the row is outside the array."""
        if not 0 <= row < self.shape[0]:
            raise UserError(f"{self.path}: no row {row} (the array holds {self.shape[0]} images)")
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return np.ascontiguousarray(self._map[row].transpose(1, 2, 0))

    def image(self, row: int):
        """``row`` as a PIL RGB image."""
        from PIL import Image

        return Image.fromarray(self.pixels(row))


def open_ref(ref: str | Path):
    """The PIL RGB image of a reference ``ARRAY#ROW`` (see :func:`ref_path`)."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise ValueError(f"{ref} is not an image array reference (ARRAY.u8#ROW)")
    return ImageArray(parsed[0]).image(parsed[1])


def load_item_image(path: Path, item_id: int, arrays: dict[Path, ImageArray], moved_hint: str = ""):
    """The PIL RGB image of an item: a file (:func:`cmh.data.image_transforms.load_image`, whose
    missing-file error carries ``moved_hint``) or an array row reference. ``arrays`` keeps the
    arrays opened so far (one memory map per process)."""
    parsed = parse_ref(path)
    if parsed is None:
        from cmh.data.image_transforms import load_image

        return load_image(path, item_id, moved_hint)
    array_path, row = parsed
    if array_path not in arrays:
        arrays[array_path] = ImageArray(array_path)
    return arrays[array_path].image(row)


def check_items(root: Path, items: list[dict], manifest: Path) -> None:
    """UserError unless every array an item's ``image`` names is complete and holds its row."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        image = item["image"]
        if not isinstance(image, dict):
            continue
        if not {"array", "row"} <= image.keys() or not isinstance(image["row"], int):
            raise UserError(f"{manifest}: item {item['id']}: image needs 'array' and 'row'")
        name = str(image["array"])
        if name not in shapes:
            shapes[name] = read_meta(Path(root) / name)["shape"]
        if not 0 <= image["row"] < shapes[name][0]:
            raise UserError(
                f"{manifest}: item {item['id']}: row {image['row']} is outside {root / name} "
                f"({shapes[name][0]} images)"
            )


def remove_stale(out: Path, keep: set[str]) -> None:
    """Delete ``images-*.u8`` / ``.json`` in ``out`` that an earlier prepare left and the
    current manifest does not name (``keep``: the array files it names)."""
    for array in Path(out).glob("images-*.u8"):
        if array.name not in keep:
            array.unlink(missing_ok=True)
            meta_path(array).unlink(missing_ok=True)
