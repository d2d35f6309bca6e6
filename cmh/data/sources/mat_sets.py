"""A benchmark set assembled from the circulated MATLAB files (``/work/shared/MAT-FORMATS.md``).

- :func:`read_dcmh`: the DCMH family, one merged file (``images`` or ``IAll``, ``LAll``,
  ``YAll`` or ``TAll``, optional ``FAll``) or a folder of split files (``*-iall.mat``,
  ``*-lall.mat``, ``*-yall.mat``, optional ``*-fall.mat``), containers mixed freely.
- :func:`read_clip`: the CLIP-era toolboxes, ``index.mat`` / ``caption.mat`` / ``label.mat``
  in one folder, with the stored image paths resolved against an images folder.

The item axis is the length every array of the set shares (copies of the same file differ in
orientation); arrays that share none are refused, naming each ``file:key`` and its shape.
Labels must be 0 / 1; images are uint8 RGB or (one Python-written COCO file) int32 BGR.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cmh.utils.errors import UserError

if TYPE_CHECKING:  # mat_files brings h5py and scipy.io: imported on the first .mat opened
    from cmh.data.sources.mat_files import Cell, LazyArray, MatFile

# role -> (split-file suffix, keys in the order tried); "names" is optional
DCMH_ROLES = {
    "images": ("-iall.mat", ("images", "IAll")),
    "labels": ("-lall.mat", ("LAll",)),
    "text": ("-yall.mat", ("YAll", "TAll")),
    "names": ("-fall.mat", ("FAll",)),
}
CLIP_FILES = {
    "index": ("index.mat", ("index", "imgs", "FAll")),
    "caption": ("caption.mat", ("caption", "tags", "YAll")),
    "labels": ("label.mat", ("category", "LAll", "labels", "label")),
}
# image layout (MATLAB order) -> its axes of (items, height, width, channels)
LAYOUTS = {"NHWC": (0, 1, 2, 3), "NCHW": (0, 2, 3, 1), "HWCN": (3, 0, 1, 2), "CHWN": (3, 1, 2, 0)}
SHOW_MISSES = 3  # stored paths quoted in the strict-mode error
TEXT_ROWS = 8192  # rows checked at a time (a NUS-WIDE bag of words is 1.5 GB of doubles)


@dataclass(eq=False)
class MatImages:
    """Images stored in a .mat file (never loaded whole), read as uint8 RGB item chunks."""

    array: LazyArray
    layout: str  # a key of LAYOUTS, in MATLAB order
    bgr: bool  # int32 arrays are BGR with values 0..255; uint8 arrays are RGB

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, H, W, 3)."""
        n, h, w, c = (self.array.shape[axis] for axis in LAYOUTS[self.layout])
        return (n, h, w, c)

    def chunks(self, size: int = 256) -> Iterator[np.ndarray]:
        """uint8 RGB blocks [<= size, H, W, 3] in item order; UserError on an int32 pixel
        outside 0..255 (naming the file:key, the items and the value)."""
        axes = LAYOUTS[self.layout]
        start = 0
        for block in self.array.slices(axes[0], size):
            block = block.transpose(axes)
            if self.bgr:
                bad = (block < 0) | (block > 255)
                if bad.any():
                    raise UserError(
                        f"{self.array.name}: int32 (BGR) pixels must be 0..255; found "
                        f"{block[bad].flat[0]} among items {start}..{start + len(block) - 1}"
                    )
                block = block[..., ::-1]
            yield np.ascontiguousarray(block, dtype=np.uint8)
            start += len(block)


@dataclass(eq=False)
class MatSet:
    """One benchmark set read from .mat files, every array with its items first."""

    n: int  # items
    labels: np.ndarray  # uint8 [N, C] in {0, 1}
    bow: np.ndarray | None = None  # int32 [N, V] counts >= 0 (text as a bag of words)
    text_features: np.ndarray | None = None  # float32 [N, D]: text stored as features (BERT)
    captions: list[list[str]] | None = None  # per item one or more strings
    images: MatImages | None = None  # images stored in the file
    image_paths: list[Path | None] | None = None  # resolved files; None for missing items
    image_names: list[str] | None = None  # stored names or paths, as written (FAll, index)
    missing: dict[int, str] = field(default_factory=dict)  # item -> why it has no image
    source: list[str] = field(default_factory=list)  # which file:key gave what, how read


def _item_count(parts: list[tuple[str, tuple[int, ...]]]) -> int:
    """The one length all ``(file:key, shape)`` parts share on an end axis (a list of
    strings is ``(len,)``); UserError naming every part and shape if none, or several, fit."""
    common: set[int] | None = None
    for _, shape in parts:
        lengths = {shape[0], shape[-1]}
        common = lengths if common is None else common & lengths
    shapes = "; ".join(f"{name} shape {shape}" for name, shape in parts)
    if not common:
        raise UserError(f"the arrays disagree on the number of items (no shared length): {shapes}")
    if len(common) > 1:
        raise UserError(
            f"cannot tell the item axis: lengths {sorted(common)} are shared by all of {shapes}"
        )
    n = common.pop()
    if n == 0:
        raise UserError(f"the set holds no items: {shapes}")
    return n


def _items_first(array: np.ndarray, n: int, name: str, what: str) -> tuple[np.ndarray, str]:
    """A 2-D array with its items on axis 0, and a note on the orientation found."""
    if array.ndim != 2:
        raise UserError(f"{name}: {what} must be a 2-D matrix (N x D), found shape {array.shape}")
    if array.shape[0] == n:
        return array, f"shape {array.shape}, items on axis 0"
    return array.T, f"shape {array.shape}, items on axis 1 (transposed)"


def _labels(array: np.ndarray, n: int, name: str) -> tuple[np.ndarray, str]:
    """uint8 [N, C] in {0, 1}; UserError naming file:key and an offending value."""
    labels, note = _items_first(array, n, name, "labels")
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        item, column = np.argwhere(bad)[0]
        raise UserError(
            f"{name}: labels must be 0 or 1; found {labels[item, column].item()!r} "
            f"at item {item}, label {column}"
        )
    return labels.astype(np.uint8), note


def _text(array: np.ndarray, n: int, name: str) -> tuple[np.ndarray, bool, str]:
    """Text matrix [N, D], whether it is a bag of words (integer counts >= 0, as int32) or
    features (anything else, as float32), and a note; UserError on a non-finite value."""
    text, note = _items_first(array, n, name, "text")
    if text.dtype.kind == "f" and not np.isfinite(text).all():
        item, column = np.argwhere(~np.isfinite(text))[0]
        raise UserError(f"{name}: text holds {text[item, column]} at item {item}, column {column}")
    rows = range(0, len(text), TEXT_ROWS)
    integral = text.dtype.kind in "biu" or all(
        (text[r : r + TEXT_ROWS] == np.round(text[r : r + TEXT_ROWS])).all() for r in rows
    )
    counts = integral and text.min() >= 0 and text.max() <= np.iinfo(np.int32).max
    if counts:
        return text.astype(np.int32), True, f"{note}, bag-of-words counts"
    return text.astype(np.float32), False, f"{note}, not counts: kept as text features"


def _image_layout(array: LazyArray, n: int) -> MatImages:
    """The layout whose item axis has ``n`` and channel axis 3; UserError if not exactly one
    fits, or the pixels are neither uint8 (RGB) nor int32 (BGR)."""
    shape = array.shape
    fits = [k for k, axes in LAYOUTS.items() if len(shape) == 4 and shape[axes[0]] == n]
    fits = [k for k in fits if shape[LAYOUTS[k][3]] == 3]
    if len(fits) != 1:
        raise UserError(
            f"{array.name}: cannot read images of shape {shape} as {n} items with 3 colour "
            f"channels (layouts {', '.join(LAYOUTS)} in MATLAB order); fitting: {fits or 'none'}"
        )
    pixels = (array.dtype.kind, array.dtype.itemsize)
    if pixels not in (("u", 1), ("i", 4)):
        raise UserError(
            f"{array.name}: images are {array.dtype}; expected uint8 RGB or int32 BGR (0..255)"
        )
    return MatImages(array, fits[0], bgr=pixels == ("i", 4))


def _text_list(entries: list[Cell], name: str) -> list[str]:
    """Entries that must be one string each (image names or paths)."""
    bad = next((i for i, e in enumerate(entries) if not isinstance(e, str)), None)
    if bad is not None:
        raise UserError(f"{name}: entry {bad} holds several strings, expected one path")
    return [str(e) for e in entries]


def _open(path: Path, stack: ExitStack) -> MatFile:
    """The .mat file ``path``, open until ``stack`` closes."""
    from cmh.data.sources.mat_files import MatFile

    return stack.enter_context(MatFile(path))


def _dcmh_files(path: Path, stack: ExitStack) -> dict[str, MatFile]:
    """role -> the open file that holds it: one merged file, or a folder of split files."""
    if path.is_file():
        mat = _open(path, stack)
        return dict.fromkeys(DCMH_ROLES, mat)
    if not path.is_dir():
        raise UserError(f"{path}: no such file or folder")
    files: dict[str, MatFile] = {}
    for role, (suffix, _) in DCMH_ROLES.items():
        found = sorted(p for p in path.iterdir() if p.name.lower().endswith(suffix))
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise UserError(f"{path}: several *{suffix} files ({names}); keep one set per folder")
        if found:
            files[role] = _open(found[0], stack)
        elif role != "names":
            listed = ", ".join(sorted(p.name for p in path.glob("*.mat"))) or "none"
            raise UserError(f"{path}: no *{suffix} file ({role}); .mat files found: {listed}")
    return files


def read_dcmh(path: str | Path) -> MatSet:
    """A DCMH-family set from one merged .mat file or a folder of split files.

    Images stay in their file (:class:`MatImages` streams them); labels, bag-of-words (or
    text features, for ``TAll`` BERT copies) and the optional ``FAll`` names are read whole.
    """
    path = Path(path)
    with ExitStack() as stack:
        files = _dcmh_files(path, stack)
        keys = {r: files[r].find(DCMH_ROLES[r][1], r) for r in ("images", "labels", "text")}
        name = {role: f"{files[role].path}:{key}" for role, key in keys.items()}
        array = files["images"].array(keys["images"])
        label_raw = files["labels"].read(keys["labels"])
        text_raw = files["text"].read(keys["text"])
        parts = [(name["images"], array.shape), (name["labels"], label_raw.shape)]
        parts.append((name["text"], text_raw.shape))
        names = None
        names_file = files.get("names")
        if names_file is not None and "FAll" in names_file:
            name["names"] = f"{names_file.path}:FAll"
            names = _text_list(names_file.strings("FAll"), name["names"])
            parts.append((name["names"], (len(names),)))
        n = _item_count(parts)
        images = _image_layout(array, n)
        labels, label_note = _labels(label_raw, n, name["labels"])
        text, is_bow, text_note = _text(text_raw, n, name["text"])
        pixels = "int32 BGR -> uint8 RGB" if images.bgr else "uint8 RGB"
        how = {role: files[role].order_note(key) for role, key in keys.items()}
        source = [
            f"images: {name['images']} ({how['images']}), layout {images.layout}, "
            f"shape {array.shape}, {pixels}",
            f"labels: {name['labels']} ({how['labels']}), {label_note}",
            f"text: {name['text']} ({how['text']}), {text_note}",
        ]
        if names is not None:
            source.append(f"image names: {name['names']}, {len(names)} names")
        return MatSet(
            n=n,
            labels=labels,
            bow=text if is_bow else None,
            text_features=None if is_bow else text,
            images=images,
            image_names=names,
            source=source,
        )


def _path_parts(stored: str) -> list[str]:
    """Components of a stored path, POSIX or Windows, after its last ``..``."""
    parts = [p for p in re.split(r"[\\/]+", stored.strip()) if p not in ("", ".")]
    if ".." in parts:
        parts = parts[len(parts) - parts[::-1].index("..") :]
    return parts


def resolve_image_paths(
    stored: list[str], images_dir: Path, source: str, strict: bool
) -> tuple[list[Path | None], dict[int, str]]:
    """Each stored path resolved under ``images_dir`` by its longest trailing components that
    name an existing file. Returns the paths (None where missing) and {item: reason} for the
    misses; with ``strict`` a miss is a UserError naming the count and the first few."""
    paths: list[Path | None] = []
    missing: dict[int, str] = {}
    for item, text in enumerate(stored):
        parts = _path_parts(text)
        found = None
        for k in range(len(parts), 0, -1):
            candidate = images_dir.joinpath(*parts[-k:])
            if candidate.is_file():
                found = candidate
                break
        paths.append(found)
        if found is None:
            missing[item] = f"image {text!r} ({source}) not found under {images_dir}"
    if strict and missing:
        first = ", ".join(repr(stored[i]) for i in list(missing)[:SHOW_MISSES])
        raise UserError(
            f"{source}: {len(missing)} of {len(stored)} image paths not found under "
            f"{images_dir} (matched by their last path components), first: {first}; "
            "pass the folder that holds the images, or allow missing images to drop them"
        )
    return paths, missing


def _clip_files(folder: Path, stack: ExitStack) -> dict[str, tuple[MatFile, str]]:
    """role -> (open file, key) of index.mat / caption.mat / label.mat in ``folder``."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (expected index.mat, caption.mat, label.mat)")
    out = {}
    for role, (filename, keys) in CLIP_FILES.items():
        if not (folder / filename).is_file():
            listed = ", ".join(sorted(p.name for p in folder.glob("*.mat"))) or "none"
            raise UserError(f"{folder}: no {filename}; .mat files found: {listed}")
        mat = _open(folder / filename, stack)
        out[role] = (mat, mat.find(keys, role))
    return out


def read_clip(folder: str | Path, images_dir: str | Path, strict: bool = False) -> MatSet:
    """A CLIP-era set: ``index.mat`` image paths (resolved under ``images_dir``; misses go to
    ``missing``, or raise with ``strict``), ``caption.mat`` strings (or a bag of words) and
    ``label.mat`` multi-hot labels."""
    folder, images_dir = Path(folder), Path(images_dir)
    if not images_dir.is_dir():
        raise UserError(f"{images_dir}: no such images folder")
    with ExitStack() as stack:
        files = _clip_files(folder, stack)
        name = {role: f"{mat.path}:{key}" for role, (mat, key) in files.items()}
        how = {role: mat.order_note(key) for role, (mat, key) in files.items()}
        index_mat, index_key = files["index"]
        stored = _text_list(index_mat.strings(index_key), name["index"])
        label_raw = files["labels"][0].read(files["labels"][1])
        caption_mat, caption_key = files["caption"]
        captions, text_raw = None, None
        if caption_mat.is_text(caption_key):
            entries = caption_mat.strings(caption_key, n_items=len(stored))
            captions = [e if isinstance(e, list) else [e] for e in entries]
            caption_shape: tuple[int, ...] = (len(captions),)
        else:
            text_raw = caption_mat.read(caption_key)
            caption_shape = text_raw.shape
        n = _item_count(
            [
                (name["index"], (len(stored),)),
                (name["caption"], caption_shape),
                (name["labels"], label_raw.shape),
            ]
        )
        labels, label_note = _labels(label_raw, n, name["labels"])
        result = MatSet(n=n, labels=labels, captions=captions, image_names=stored)
        result.image_paths, result.missing = resolve_image_paths(
            stored, images_dir, name["index"], strict
        )
        found = n - len(result.missing)
        result.source = [
            f"image paths: {name['index']} ({how['index']}), {n} stored, {found} found under "
            f"{images_dir}, {len(result.missing)} missing",
            f"labels: {name['labels']} ({how['labels']}), {label_note}",
        ]
        if text_raw is not None:
            text, is_bow, text_note = _text(text_raw, n, name["caption"])
            result.bow, result.text_features = (text, None) if is_bow else (None, text)
            result.source.append(f"text: {name['caption']} ({how['caption']}), {text_note}")
        else:
            result.source.append(f"captions: {name['caption']} ({how['caption']}), {n} items")
        return result
