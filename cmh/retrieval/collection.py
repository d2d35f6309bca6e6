"""What goes into an index: a prepared split's items, or a collection of your own.

A collection is a folder of images (``--images DIR``: every file below it with an image
extension, in the order of their relative paths, which are their ids) and / or a file of
captions (``--texts FILE``: one caption per line, id ``FILE_NAME:LINE``; or JSONL, one object
per line with an ``id`` and a ``text``). A caption whose id equals an image's relative path
describes that image: the two are one item with both codes. Unreadable images are listed and
left out (``strict``: refused). :func:`encode_collection` returns the items table and the
packed codes that :mod:`cmh.retrieval.index_folder` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cmh.retrieval.binary_index import pack_codes
from cmh.retrieval.index_folder import (
    TABLE_KEYS,
    Index,
    append_items,
    check_index_folder,
    load_index,
    model_meta,
    write_index_dir,
)
from cmh.utils import progress
from cmh.utils.errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def split_items(data, encoded: dict) -> tuple[dict, dict]:
    """(items table, {modality: (packed codes, rows)}) of an encoded split of a prepared folder."""
    items = [data.items[row] for row in data.rows([int(i) for i in encoded["ids"]])]
    fields = {"ids": "id", "captions": "caption", "labels": "labels"}
    table = {key: [it[field] for it in items] for key, field in fields.items()}
    table["images"] = [str(data.image_path(it).resolve()) for it in items]
    table["label_names"] = list(data.label_names)
    rows = np.arange(len(items), dtype=np.int64)
    return table, {m: (pack_codes(encoded[m]), rows) for m in ("image", "text") if m in encoded}


def list_images(folder: str | Path) -> list[tuple[str, Path]]:
    """(id, path) of every image file below ``folder`` (recursive; hidden files and folders
    skipped), sorted by id: the path relative to ``folder``, with / separators."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--images {folder}: no such folder")
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not any(
            part.startswith(".") for part in rel.parts
        ):
            found.append((rel.as_posix(), path.resolve()))
    return sorted(found)


def read_captions(path: str | Path) -> list[tuple[str, str]]:
    """(id, text) of each caption of a text file (one per non-empty line, id NAME:LINE) or a
    JSONL file (``.jsonl``: {"id": ..., "text": ...} per line); UserError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--texts {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"--texts {path}: not UTF-8 text ({e})") from None
    out, seen = [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if path.suffix.lower() != ".jsonl":
            out.append((f"{path.name}:{number}", line.strip()))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}, line {number}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or "id" not in obj:
            raise UserError(f'{path}, line {number}: expected {{"id": ..., "text": "..."}}')
        key = str(obj["id"])
        if key in seen:
            raise UserError(f"{path}, line {number}: id {key!r} again (first on line {seen[key]})")
        seen[key] = number
        out.append((key, obj["text"].strip()))
    if not out:
        raise UserError(f"--texts {path}: no caption in it")
    return out


def encode_images(hasher, found: list[tuple[str, Path]], batch_size: int, strict: bool):
    """(packed codes, ids encoded, [(path, reason)] unreadable) of the images ``found``."""
    codes, ids, bad, batch = [], [], [], []

    def flush():
        if batch:
            codes.append(hasher.encode_pixels(torch.stack([p for _, p in batch])))
            ids.extend(i for i, _ in batch)
            batch.clear()

    for key, path in progress.long_step(found, "encode images"):
        try:
            batch.append((key, hasher.preprocess_image(path)))
        except UserError as e:
            if strict:
                raise UserError(f"{e} (--strict: an unreadable image stops the index)") from None
            bad.append((str(path), str(e).split(": ", 1)[-1]))
        if len(batch) == batch_size:
            flush()
    flush()
    return (np.concatenate(codes) if codes else hasher.no_codes()), ids, bad


def encode_collection(hasher, images=None, texts=None, batch_size: int = 64, strict: bool = False,
                      known: dict | None = None, say=print) -> tuple[dict, dict, list]:  # fmt: skip
    """(items table, {modality: (packed codes, rows)}, unreadable images) of a collection.

    known: {id: (image path, caption)} already in an index (``retrieve.py add``): an item with
    the same id and source is skipped; the same id from another source is refused."""
    known, found, captions = known or {}, [], []
    if images is not None:  # an image already indexed (by id, or by path under another id) is skipped
        held = {image for image, _ in known.values() if image}
        found = [(key, p) for key, p in list_images(images) if not _seen(known, key, str(p), 0) and str(p) not in held]
    if texts is not None:
        captions = [(key, t) for key, t in read_captions(texts) if not _seen(known, key, t, 1)]
    if images is not None and texts is None and not found and not known:
        raise UserError(f"--images {images}: no image file below it ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    packed_images, image_ids, bad = encode_images(hasher, found, batch_size, strict) if found else (None, [], [])
    table = {key: [] for key in TABLE_KEYS}
    row_of: dict[str, int] = {}
    encoded = set(image_ids)
    for key, path in found:
        if key in encoded:
            row_of[key] = len(table["ids"])
            _append(table, key, str(path), None)
    text_rows = []
    for key, text in captions:
        if key in row_of:
            table["captions"][row_of[key]] = text
        else:
            row_of[key] = len(table["ids"])
            _append(table, key, None, text)
        text_rows.append(row_of[key])
    table["label_names"] = []
    packed = {}
    if image_ids:
        packed["image"] = (packed_images, np.array([row_of[k] for k in image_ids], np.int64))
    if captions:
        say(f"encoding {len(captions)} captions")
        packed["text"] = (hasher.encode_texts([t for _, t in captions], 128), np.array(text_rows, np.int64))
    for path, reason in bad:
        say(f"skipped unreadable image {path}: {reason}")
    return table, packed, bad


def _append(table: dict, key: str, image: str | None, caption: str | None) -> None:
    for name, value in zip(TABLE_KEYS, (key, caption, image, None), strict=True):
        table[name].append(value)


def _seen(known: dict, key: str, source: str, which: int) -> bool:
    """Whether ``key`` is already indexed from ``source`` (skip it); UserError when the id is
    indexed from something else (which: 0 image path, 1 caption): ids name one item."""
    if key not in known:
        return False
    if known[key][which] != source:
        what = ("image", "caption")[which]
        held = known[key][which] or ("a caption without an image", "an image without a caption")[which]
        raise UserError(f"{what} id {key!r} is already in the index ({held!r}); ids name one "
                        "item: rename the new file")  # fmt: skip
    return True


def summary(table: dict, packed: dict, bad: list) -> str:
    """``encoded 120 images, 40 captions (12 of them of an image); 2 unreadable images skipped``."""
    n_img = len(packed["image"][1]) if "image" in packed else 0
    n_txt = len(packed["text"][1]) if "text" in packed else 0
    both = len(set(packed["image"][1].tolist()) & set(packed["text"][1].tolist())) if n_img and n_txt else 0
    parts = [f"{n_img} images"] * bool(n_img) + [f"{n_txt} captions"] * bool(n_txt)
    line = "encoded " + (", ".join(parts) or "nothing") + (f" ({both} of them of an image)" if both else "")
    return line + (f"; {len(bad)} unreadable images skipped" if bad else "")


def index_collection(hasher, out, images=None, texts=None, kind: str = "flat",
                     params: dict | None = None, strict: bool = False, overwrite: bool = False,
                     batch_size: int = 64, say=print) -> dict:  # fmt: skip
    """Encode a folder of images and / or a caption file with ``hasher`` and write the index
    folder ``out`` (``kind`` and ``params`` as :func:`binary_index.choose_params` takes them);
    its meta.json. What `retrieve.py index --images / --texts` runs."""
    table, packed, bad = encode_collection(hasher, images, texts, batch_size, strict, say=say)
    if not table["ids"]:
        raise UserError("nothing to index: every image was unreadable")
    say(summary(table, packed, bad))
    meta = model_meta(hasher.checkpoint, hasher.state, hasher.cfg) | {"split": "collection"}
    meta["collection"] = {"images": _absolute(images), "texts": _absolute(texts)}
    if hasher.vocab is not None:  # a bag-of-words model: queries and adds count with this vocabulary
        meta["data"] = str(Path(hasher.data).resolve())
    meta |= {"kind": kind, "given": params or {}}
    return write_index_dir(Path(out), table, packed, meta, overwrite)


def addable_index(index_dir, images, texts):
    """The collection index ``index_dir``, read; UserError when there is nothing to add or it
    is a prepared split's index (cheap: before any model is loaded)."""
    if images is None and texts is None:
        raise UserError("add what? give --images DIR and / or --texts FILE")
    check_index_folder(index_dir)
    index = load_index(index_dir)
    if "collection" not in index.meta:
        raise UserError(f"--index {index_dir} holds split {index.meta['split']} of a prepared "
                        "dataset; add works on a collection's index (`retrieve.py index --images "
                        "DIR` / `--texts FILE`)")  # fmt: skip
    return index


def add_to_index(hasher, index_dir, images=None, texts=None, strict: bool = False,
                 batch_size: int = 64, say=print) -> dict:  # fmt: skip
    """Append the images and captions not yet in the collection index ``index_dir`` (a folder,
    or the :class:`Index` :func:`addable_index` read from it); ``hasher`` must make its codes.
    Its meta.json. What `retrieve.py add` runs."""
    index = index_dir if isinstance(index_dir, Index) else addable_index(index_dir, images, texts)
    if hasher.fingerprint != index.meta["fingerprint"]:
        raise UserError(f"{index_dir} was built with checkpoint {index.meta['checkpoint']}; "
                        f"{hasher.checkpoint} makes other codes: add with the index's model")  # fmt: skip
    fields = (index.items[key] for key in ("ids", "images", "captions"))
    known = {key: (image, caption) for key, image, caption in zip(*fields, strict=True)}
    table, packed, bad = encode_collection(hasher, images, texts, batch_size, strict, known, say)
    say(summary(table, packed, bad) if table["ids"] else "nothing new: every item is in the index")
    if not table["ids"]:
        return index.meta
    sources = index.meta["collection"]
    update = {"collection": {"images": sources["images"] + _absolute(images),
                             "texts": sources["texts"] + _absolute(texts)}}  # fmt: skip
    return append_items(index.root, table, packed, update, read=index.meta)


def _absolute(path) -> list[str]:
    return [str(Path(path).resolve())] if path else []
