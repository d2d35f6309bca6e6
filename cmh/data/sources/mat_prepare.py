"""The prepare step for the circulated MATLAB benchmark files (``data.py prepare --mat``).

    python data.py prepare --mat FLICKR-25K.mat --format dcmh --dataset mirflickr --out DATA
    python data.py prepare --mat nus-wide-tc21/ --format dcmh --dataset nuswide --out DATA
    python data.py prepare --mat coco/ --format clip --images COCO_IMAGES --dataset coco --out DATA

:func:`plan` reads the set (:mod:`cmh.data.sources.mat_sets`: one merged DCMH file, a folder of split DCMH
files, or a CLIP-era ``index.mat`` / ``caption.mat`` / ``label.mat`` folder), checks it against
``--dataset``, drops unusable items with a reason and draws the split of ``--protocol``
(:mod:`cmh.data.published_splits`; explicit ``--n-query`` / ``--n-train`` win). :func:`stage_images` then
copies images held in the file, in chunks, into the prepare's staging folder as one uint8 array
(:mod:`cmh.data.caches.image_array`); :mod:`cmh.data.prepare` writes the rest and renames it all into place,
summary.json last, as for every input.

Manifest lines: ``id`` = the item's position in the set (0-based), ``labels`` (label columns),
``caption`` (the first caption; "" for a set whose text is a bag of words), ``captions`` (all of
them, when an item has several: COCO), ``bow`` ``{"indices", "counts"}`` (a bag-of-words set),
``image`` (a path relative to the folder for images on disk, ``{"array", "row"}`` for images
copied from the file) and ``name`` (the DCMH ``FAll`` file name, when the set has one).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmh.data.caches import image_array
from cmh.data.image_transforms import image_decodes
from cmh.data.published_splits import check_dataset, split_sizes
from cmh.data.sources.mat_sets import MatImages, MatSet, read_clip, read_dcmh
from cmh.data.sources.registry import DataSource, register_source
from cmh.data.splits import make_splits
from cmh.utils.errors import UserError

DEFAULT_PROTOCOL = "dcmh"
NEEDS_TEXT = ("nuswide",)  # datasets whose items without any tag are dropped (190,421 of 195,834)
CHUNK_BYTES = 16 * 2**20  # pixels copied at a time


@dataclass(eq=False)
class MatPlan:
    """What a .mat set becomes: kept items (manifest fields, image still to stage), the drops,
    the label names, the split, the bag-of-words width and the summary's extra fields."""

    kept: list[dict]
    dropped: list[dict]
    label_names: list[str]
    splits: dict[str, list[int]]
    bow_width: int | None
    extra: dict
    images: MatImages | None = None  # images held in the file, copied by stage_images
    keep: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # [N] kept items


def check_flags(args: argparse.Namespace) -> None:
    """UserError naming the flag that is missing or does not fit ``--format``."""
    if args.format is None:
        raise UserError(
            "--mat needs --format: dcmh (one merged DCMH file or a folder of *-iall/-lall/-yall "
            "files) or clip (a folder of index.mat, caption.mat, label.mat)"
        )
    if args.dataset is None:
        raise UserError(
            "--mat needs --dataset mirflickr, nuswide, coco or iapr (it checks the label "
            "width and picks the protocol's split sizes)"
        )
    if args.format == "clip" and args.images is None:
        raise UserError(
            "--format clip needs --images DIR: the folder the image paths of index.mat are "
            "found under (matched by their last path components)"
        )
    if args.format == "dcmh" and args.images is not None:
        raise UserError(
            f"--images {args.images}: --format dcmh reads the images from the .mat file; "
            "--images is for --format clip"
        )


def _read(args: argparse.Namespace) -> MatSet:
    """The set of ``--mat`` in ``--format``, its label width checked against ``--dataset``."""
    if args.format == "dcmh":
        mat_set = read_dcmh(args.mat)
    else:
        mat_set = read_clip(args.mat, args.images, strict=args.strict)
    try:
        check_dataset(args.dataset, mat_set.labels.shape[1])
    except UserError as exc:
        raise UserError(f"--dataset {args.dataset} does not fit --mat {args.mat}: {exc}") from None
    if mat_set.bow is None and mat_set.captions is None:
        width = mat_set.text_features.shape[1] if mat_set.text_features is not None else 0
        where = next((s for s in mat_set.source if s.startswith("text:")), str(args.mat))
        raise UserError(
            f"{where}: the text is stored as {width}-d features, not bag-of-words counts or "
            "strings; only a bag of words (--text-encoder bow) or captions can be trained here"
        )
    return mat_set


def _drop_reasons(args: argparse.Namespace, mat_set: MatSet) -> dict[int, str]:
    """{item: reason} of the items that cannot be used: no label, no text (NUS-WIDE), no image
    under --images, an image PIL cannot decode (with --check-images)."""
    reasons: dict[int, str] = {}
    for item in np.flatnonzero(~mat_set.labels.any(axis=1)).tolist():
        reasons[item] = "no labels"
    if args.dataset in NEEDS_TEXT:
        if mat_set.bow is not None:
            empty = ~mat_set.bow.any(axis=1)
        else:
            empty = np.array([not any(c.strip() for c in cs) for cs in mat_set.captions])
        for item in np.flatnonzero(empty).tolist():
            reasons.setdefault(item, "no text")
    for item in mat_set.missing:
        reasons.setdefault(item, "missing image")
    if mat_set.image_paths is not None and args.check_images:
        for item, path in enumerate(mat_set.image_paths):
            if item not in reasons and not image_decodes(path):
                reasons[item] = "unreadable image"
    return dict(sorted(reasons.items()))


def _refuse_drop(args: argparse.Namespace, mat_set: MatSet, item: int, reason: str) -> None:
    """The --strict error for the first item that would be dropped."""
    detail = mat_set.missing.get(item, "")
    if reason == "unreadable image":
        detail = f"image {mat_set.image_paths[item]} cannot be decoded"
    raise UserError(
        f"--mat {args.mat}: item {item}: {reason}{f' ({detail})' if detail else ''}; without "
        "--strict such items are dropped and listed in summary.json"
    )


def _item(mat_set: MatSet, k: int) -> dict:
    """The manifest fields of item ``k`` (the image of a file set is filled in when staged)."""
    item: dict = {"id": k, "image": None, "caption": "", "labels": []}
    item["labels"] = np.flatnonzero(mat_set.labels[k]).tolist()
    if mat_set.captions is not None:
        captions = [c.strip() for c in mat_set.captions[k]] or [""]
        item["caption"] = captions[0]
        if len(captions) > 1:
            item["captions"] = captions
    if mat_set.bow is not None:
        row = mat_set.bow[k]
        columns = np.flatnonzero(row)
        item["bow"] = {"indices": columns.tolist(), "counts": row[columns].tolist()}
    if mat_set.image_paths is not None:
        item["image"] = mat_set.image_paths[k]
    if mat_set.image_names is not None and mat_set.images is not None:
        item["name"] = mat_set.image_names[k]
    return item


def _split(args: argparse.Namespace, ids: list[int]) -> dict[str, list[int]]:
    """The seeded split of ``ids`` with the protocol's sizes (explicit sizes win)."""
    protocol = args.protocol or DEFAULT_PROTOCOL
    n_query, n_train = split_sizes(args.dataset, protocol, args.n_query, args.n_train)
    try:
        return make_splits(ids, n_query, n_train, args.n_val, args.seed)
    except UserError as exc:
        if args.n_query is not None and args.n_train is not None:
            raise
        raise UserError(
            f"{exc} (--protocol {protocol} for {args.dataset}: {n_query} queries, {n_train} "
            f"training items, of {len(ids)} usable items); pass --n-query / --n-train"
        ) from None


def plan(args: argparse.Namespace) -> MatPlan:
    """Read, check, drop and split the ``--mat`` set (nothing is written)."""
    check_flags(args)
    if args.n_val is None:
        args.n_val = 1000
    mat_set = _read(args)
    reasons = _drop_reasons(args, mat_set)
    if args.strict and reasons:
        _refuse_drop(args, mat_set, *next(iter(reasons.items())))
    keep = np.ones(mat_set.n, dtype=bool)
    keep[list(reasons)] = False
    if not keep.any():
        counts = dict(Counter(reasons.values()))
        raise UserError(f"--mat {args.mat}: no usable items: all {mat_set.n} dropped ({counts})")
    kept = [_item(mat_set, k) for k in np.flatnonzero(keep).tolist()]
    splits = _split(args, [item["id"] for item in kept])
    bow_width = None if mat_set.bow is None else int(mat_set.bow.shape[1])
    extra = {
        "source": "mat",
        "seed": args.seed,
        "mat": {
            "path": str(Path(args.mat).resolve()),
            "format": args.format,
            "dataset": args.dataset,
            "protocol": args.protocol or DEFAULT_PROTOCOL,
            "text": "bag of words" if bow_width else "captions",
            "read": mat_set.source,
        },
    }
    if mat_set.captions is not None:
        extra["mat"]["captions_per_item_max"] = max(len(it.get("captions", [1])) for it in kept)
    return MatPlan(
        kept=kept,
        dropped=[{"id": k, "reason": r} for k, r in reasons.items()],
        label_names=[f"label_{c:03d}" for c in range(mat_set.labels.shape[1])],
        splits=splits,
        bow_width=bow_width,
        extra=extra,
        images=mat_set.images,
        keep=keep,
    )


def _kept_blocks(images: MatImages, keep: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """The kept items' pixels, uint8 RGB [<= size, H, W, 3] at a time, in item order."""
    start = 0
    for block in images.chunks(size):
        mask = keep[start : start + len(block)]
        start += len(block)
        if mask.all():
            yield block
        elif mask.any():
            yield block[mask]


def stage_images(planned: MatPlan, folder: Path) -> tuple[str, ...]:
    """Copy the images held in the file (kept items only) into ``folder`` as one uint8 array,
    point each kept item at its row and record the array in the summary; returns the names of
    the files written (none when the images are files on disk)."""
    if planned.images is None:
        return ()
    _, height, width, _ = planned.images.shape
    size = max(1, CHUNK_BYTES // (height * width * 3))
    blocks = _kept_blocks(planned.images, planned.keep, size)
    meta = image_array.write_array(folder, blocks, len(planned.kept), height, width)
    for row, item in enumerate(planned.kept):
        item["image"] = {"array": meta["file"], "row": row}
    planned.extra["image_array"] = meta
    return (meta["file"], image_array.meta_path(Path(meta["file"])).name)


MAT = register_source(DataSource(
    "mat", "a benchmark set in MATLAB .mat files (DCMH's or the CLIP toolboxes')",
    selects=("mat",), accepts=("format", "dataset", "protocol", "n_query", "n_train", "images"),
    plan=plan, stage_images=stage_images, order=20,
))  # fmt: skip
