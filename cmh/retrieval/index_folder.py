"""The index folder: items, packed codes and FAISS indexes, written whole or not at all.

A folder holds ``meta.json`` and one generation of data files: ``items.G.json`` (the items
table: ids, captions, image paths, label columns, label names; an item may have only a caption
or only an image), ``codes.G.npz`` (per modality the packed codes and ``MODALITY_rows``, the
item row of each code) and ``MODALITY.G.faiss``. meta.json names the files of its generation
(``files``); writing a new generation (an index build, ``retrieve.py add``) writes its files
under new names, then meta.json (the commit, atomic), then removes the old generation. A crash
or a kill at any moment leaves the last committed index intact; leftovers of an interrupted
write are removed by the next one. One writer at a time (:func:`writing_folder`). Folders of
format 1 (fixed names, every item with both modalities) are read as they are.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from cmh.retrieval.binary_index import (
    MODALITIES,
    auto_nlist,
    build_index,
    choose_params,
    fingerprint,
    search,
    set_search_params,
)
from cmh.utils.atomic_io import atomic_path, write_text_atomic
from cmh.utils.errors import UserError
from cmh.utils.folder_lock import writing_folder

FORMAT_VERSION = 2
TABLE_KEYS = ("ids", "captions", "images", "labels")
# meta.json, and every data file of any generation (format 1: no generation number)
OWN_FILE = re.compile(r"meta\.json|(items|codes|image|text)(\.\d+)?\.(json|npz|faiss)")
V1_FILES = {"items": "items.json", "codes": "codes.npz", **{m: f"{m}.faiss" for m in MODALITIES}}
MODEL_SUMMARY = ("bits", "image_encoder", "text_encoder", "text_model", "image_size", "max_length")


def model_meta(path: Path, state: dict, cfg) -> dict:
    """What an index records of the checkpoint that made its codes (meta.json)."""
    summary = {key: cfg.to_dict()[key] for key in MODEL_SUMMARY} | {"labels": len(cfg.label_names)}
    return {"bits": cfg.bits, "checkpoint": str(Path(path).resolve()), "fingerprint": fingerprint(state),
            "epoch": state.get("epoch"), "model": summary, "faiss": faiss.__version__}  # fmt: skip


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that holds an index without --overwrite, or anything this tool did not
    write (named: --overwrite replaces the index's own files, never a file of yours)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if not out.is_dir():
        return
    foreign = sorted(n for n in os.listdir(out) if not OWN_FILE.fullmatch(n) and n[0] != ".")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(
            f"--out {out} holds what an index does not: {shown}. Move it out of the folder, "
            "or choose another --out"
        )
    if (out / "meta.json").is_file() and not overwrite:
        raise UserError(f"--out {out} already holds an index; pass --overwrite to replace it")


@dataclass
class Index:
    """An index folder in memory: meta.json, the items table, packed codes and their rows."""

    root: Path
    meta: dict
    items: dict  # TABLE_KEYS -> one entry per item (None where an item lacks it), label_names
    codes: dict[str, np.ndarray]  # modality -> uint8 [n_m, ceil(bits/8)]
    rows: dict[str, np.ndarray]  # modality -> int64 [n_m]: the item row of each code
    faiss_bytes: dict[str, np.ndarray]  # modality -> the .faiss file, read with the rest

    def faiss_index(self, modality: str, params: dict | None = None):
        """A fresh FAISS index of ``modality`` (its own search parameters: safe across threads)."""
        path = self.root / self.meta.get("files", V1_FILES)[modality]
        index = faiss.deserialize_index_binary(self.faiss_bytes[modality])
        if index.d != 8 * self.codes[modality].shape[1] or index.ntotal != len(self.rows[modality]):
            raise UserError(
                f"{path} holds {index.ntotal} codes of {index.d} bits; the folder's codes.npz "
                f"{len(self.rows[modality])} of {self.meta['bits']} bits: rebuild the index"
            )
        set_search_params(index, {**self.meta["params"], **(params or {})})
        return index

    def row(self, item_id) -> int | None:
        """The row of an item id (an int id may be given as its digits), or None."""
        ids = self.items["ids"]
        if item_id not in ids and isinstance(item_id, str) and item_id.lstrip("-").isdigit():
            item_id = int(item_id)
        return ids.index(item_id) if item_id in ids else None

    def code_of(self, row: int, modality: str) -> np.ndarray | None:
        """The packed code [1, B] of item ``row`` in ``modality``, or None if it has none."""
        where = np.flatnonzero(self.rows[modality] == row) if modality in self.rows else []
        return self.codes[modality][where[:1]] if len(where) else None

    def search(self, modality: str, packed: np.ndarray, k: int, params: dict | None = None,
               faiss_index=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Top k of ``modality``'s codes for packed queries [Q, B]: (distances, item rows; -1
        where fewer were found), ranked as :func:`binary_index.search` ranks."""
        dist, pos = search(faiss_index or self.faiss_index(modality, params), packed, k)
        return dist, np.where(pos < 0, -1, self.rows[modality][np.maximum(pos, 0)])


def check_index_folder(root: str | Path) -> None:
    """UserError unless ``root`` holds an index's meta.json (cheap: before anything is loaded)."""
    if not (Path(root) / "meta.json").is_file():
        raise UserError(f"--index {root} is not an index folder (no meta.json); build one first")


def load_index(root: str | Path) -> Index:
    """Read an index folder written by `retrieve.py index` / `add`; UserError if it is not one."""
    root = Path(root)
    check_index_folder(root)
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format_version") not in (1, FORMAT_VERSION):
        raise UserError(f"{root}/meta.json: format_version {meta.get('format_version')} is not "
                        f"1 or {FORMAT_VERSION}: rebuild the index with this version")  # fmt: skip
    files = meta.get("files", V1_FILES)
    try:  # every file of the generation now: a later commit removes them
        items = json.loads((root / files["items"]).read_text(encoding="utf-8"))
        with np.load(root / files["codes"]) as z:
            codes = {m: z[m] for m in meta["modalities"]}
            rows = {m: z[f"{m}_rows"] if f"{m}_rows" in z else np.arange(len(codes[m])) for m in codes}
        blobs = {m: np.fromfile(root / files[m], dtype=np.uint8) for m in codes}
    except FileNotFoundError as e:
        raise UserError(f"{root}: {Path(e.filename).name} is gone: the index changed while it was "
                        "read (an `add` or `index --overwrite` committed); run again") from None  # fmt: skip
    for m, c in codes.items():
        if c.shape[1:] != ((meta["bits"] + 7) // 8,) or len(rows[m]) != len(c):
            raise UserError(f"{root}/{files['codes']}: {m} codes {c.shape} do not match meta.json bits")
    return Index(root, meta, items, codes, rows, blobs)


def commit(out: Path, table: dict, packed: dict, meta: dict, faiss_indexes: dict) -> None:
    """Write a new generation into ``out`` (the caller holds its lock): the data files under new
    names, then meta.json, then the old generation's files are removed. packed: modality ->
    (codes uint8 [n, B], rows int64 [n]); faiss_indexes: modality -> built index."""
    old = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
    gen = old.get("generation", 0) + 1
    files = {"items": f"items.{gen}.json", "codes": f"codes.{gen}.npz"}
    files |= {m: f"{m}.{gen}.faiss" for m in packed}
    for m, index in faiss_indexes.items():
        with atomic_path(out / files[m]) as tmp:
            faiss.write_index_binary(index, str(tmp))
    arrays = {m: c for m, (c, _) in packed.items()} | {f"{m}_rows": r for m, (_, r) in packed.items()}
    with atomic_path(out / files["codes"]) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    write_text_atomic(out / files["items"], json.dumps(table, ensure_ascii=False))
    meta = {**meta, "format_version": FORMAT_VERSION, "generation": gen, "files": files}
    meta["modalities"] = [m for m in MODALITIES if m in packed]
    meta["counts"] = {m: len(packed[m][1]) for m in meta["modalities"]}
    meta["n_items"] = len(table["ids"])
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    for name in os.listdir(out):  # the old generation, and leftovers of an interrupted write
        if OWN_FILE.fullmatch(name) and name != "meta.json" and name not in files.values():
            (out / name).unlink(missing_ok=True)


def write_index_dir(out: Path, table: dict, packed: dict, meta: dict, overwrite: bool) -> dict:
    """Build each modality's FAISS index of ``meta["kind"]`` and commit it all as the folder's
    first (or, with ``overwrite``, next) generation, under the folder's one-writer lock; the meta
    written. meta["params"]: the parameters ``meta["given"]`` names, the rest chosen for the
    largest modality (:func:`binary_index.choose_params`; IVF lists per modality:
    :func:`modality_params`)."""
    given = {k: v for k, v in meta.get("given", {}).items() if v is not None}
    n = max(len(rows) for _, rows in packed.values())
    meta = {**meta, "given": given, "params": choose_params(meta["kind"], n, meta["bits"], given)}
    with writing_folder(out, "an index build", done_when="meta.json"):
        check_out(out, overwrite)  # again, now that no other build can write here
        indexes = {m: build_index(c, meta["kind"], modality_params(meta, len(c))) for m, (c, _) in packed.items()}
        commit(out, table, packed, meta, indexes)
        return json.loads((out / "meta.json").read_text())


def modality_params(meta: dict, n: int) -> dict:
    """The build parameters of a modality of n codes: meta's, with a chosen IVF nlist that n
    codes cannot fill (a few captions beside many images) chosen again for n."""
    params = dict(meta["params"])
    if meta["kind"] == "ivf" and not meta.get("given", {}).get("nlist") and params["nlist"] > n:
        params["nlist"] = auto_nlist(n)
    return params


def append_items(root: Path, table: dict, packed: dict, meta_update: dict, read: dict) -> dict:
    """Add items to an index folder without re-encoding the old ones: the new rows of ``table``
    appended to the items, each modality's new codes (rows relative to ``table``) added to its
    FAISS index (built when the modality is new). Under the folder's lock; refused when the
    folder changed since ``read`` (its meta.json when the new items were chosen and encoded:
    another writer committed meanwhile). The meta written."""
    with writing_folder(root, "an index update", done_when="meta.json"):
        index = load_index(root)  # again, now that no other writer can change it
        if (index.meta.get("generation"), index.meta["fingerprint"]) != (read.get("generation"), read["fingerprint"]):
            raise UserError(f"{root} changed while the new items were encoded (another `add` or "
                            "`index --overwrite` committed); run add again")  # fmt: skip
        start = len(index.items["ids"])
        merged = {key: index.items[key] + table[key] for key in TABLE_KEYS}
        merged["label_names"] = index.items["label_names"]
        out_packed, indexes = {}, {}
        for m in MODALITIES:
            old = (index.codes[m], index.rows[m]) if m in index.codes else None
            new = packed.get(m)
            if old is None and new is None:
                continue
            if new is None:
                out_packed[m], indexes[m] = old, index.faiss_index(m)
                continue
            codes, rows = new[0], np.asarray(new[1], np.int64) + start
            if old is None:
                indexes[m] = build_index(codes, index.meta["kind"], modality_params(index.meta, len(codes)))
            else:
                indexes[m] = index.faiss_index(m)
                indexes[m].add(codes)
                codes, rows = np.concatenate([old[0], codes]), np.concatenate([old[1], rows])
            out_packed[m] = (codes, rows)
        commit(root, merged, out_packed, {**index.meta, **meta_update}, indexes)
        return json.loads((root / "meta.json").read_text())
