"""FAISS binary indexes of ±1 hash codes: packing, building, exact tie order, the index folder.

Codes are packed 8 bits a byte (bit set for +1, zero padding to whole bytes) into
IndexBinaryFlat (exact), IndexBinaryHNSW or IndexBinaryIVF (approximate). :func:`search`
returns evaluate.py's ranking: by Hamming distance, ties by database position (FAISS itself
does not order equal distances; see its docstring). An index folder holds ``image.faiss``,
``text.faiss``, ``codes.npz``, ``items.json`` and ``meta.json``, each written whole by one
writer at a time, meta.json last (:func:`write_index_dir`), read back by :func:`load_index`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from cmh.utils.atomic_io import atomic_path, write_text_atomic
from cmh.utils.errors import UserError
from cmh.utils.folder_lock import writing_folder

MODALITIES = ("image", "text")
KINDS = ("flat", "hnsw", "ivf")
FORMAT_VERSION = 1


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """±1 codes [N, bits] -> uint8 [N, ceil(bits/8)]: bit set for +1, zero padded (FAISS layout).
    Padding bits are 0 in every code, so Hamming distances are unchanged."""
    return np.ascontiguousarray(np.packbits(np.asarray(codes) > 0, axis=1))


def auto_nlist(n: int) -> int:
    """IVF lists for n items: about sqrt(n), with >= 39 training points per list."""
    return max(1, min(round(math.sqrt(n)), n // 39))


def build_index(packed: np.ndarray, kind: str = "flat", params: dict | None = None):
    """A FAISS binary index over packed codes uint8 [N, B] (d = 8B), items at positions 0..N-1.

    params: hnsw_m, ef_construction, ef_search (hnsw); nlist (0 = auto_nlist), nprobe (ivf)."""
    p, d = dict(params or {}), 8 * packed.shape[1]
    if kind == "flat":
        index = faiss.IndexBinaryFlat(d)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(d, p["hnsw_m"])
        index.hnsw.efConstruction = p["ef_construction"]
    elif kind == "ivf":
        nlist = p["nlist"] or auto_nlist(len(packed))
        if not 1 <= nlist <= len(packed):
            raise UserError(f"--nlist must be in 1..{len(packed)} (the items), got {nlist}")
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist)
        index.cp.max_points_per_centroid = 64  # k-means on <= 64 * nlist sampled codes
        index.train(packed)
    else:
        raise UserError(f"--kind must be one of {KINDS}, got {kind!r}")
    index.add(packed)
    set_search_params(index, p)
    return index


def set_search_params(index, params: dict) -> None:
    """efSearch (HNSW) and nprobe (IVF, at most nlist) from params where given."""
    if hasattr(index, "hnsw") and params.get("ef_search"):
        index.hnsw.efSearch = params["ef_search"]
    if hasattr(index, "nprobe") and params.get("nprobe"):
        index.nprobe = min(params["nprobe"], index.nlist)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k by Hamming distance, ties by database position (see the module docstring).

    queries: packed uint8 [Q, B]. Returns (distances int32 [Q, k] in 0..d, positions int64 [Q, k]);
    where an approximate index finds fewer than k items, position -1 and distance d + 1 pad the row.
    Only the queries whose k'-th distance still equals their k-th are searched again.
    """
    n, d = index.ntotal, index.d
    out_dist, out_pos = np.full((len(queries), k), d + 1, np.int32), np.full((len(queries), k), -1)
    todo, kk = np.arange(len(queries)), min(n, max(2 * k, k + 32))
    ef = index.hnsw.efSearch if hasattr(index, "hnsw") else 0
    try:
        while todo.size:
            if ef:
                index.hnsw.efSearch = max(ef, kk)  # HNSW returns at most efSearch items
            dist, pos = index.search(queries[todo], kk)
            dist = np.where(pos < 0, d + 1, dist)
            done = (kk == n) | (pos[:, -1] < 0) | (dist[:, -1] > dist[:, k - 1])
            pos = np.where(pos < 0, n, pos)[done]
            order = np.lexsort((pos, dist[done]))[:, :k]
            out_dist[todo[done]] = np.take_along_axis(dist[done], order, axis=1)
            out_pos[todo[done]] = np.take_along_axis(pos, order, axis=1)
            todo, kk = todo[~done], min(n, 2 * kk)
    finally:
        if ef:
            index.hnsw.efSearch = ef
    return out_dist, np.where(out_pos == n, -1, out_pos)


POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def tied_beyond(codes: np.ndarray, query: np.ndarray, shown: np.ndarray) -> int:
    """How many database items not shown lie at the same Hamming distance as the last one shown
    (the items among which the cut-off picked by position). codes: packed uint8 [n, B]; query:
    packed [1, B]; shown: the distances of the rows shown, ascending. Counted exactly over every
    stored code (one pass, n * B bytes), whatever the index kind."""
    if len(shown) == 0:
        return 0
    last = int(shown[-1])
    at_last = 0
    for start in range(0, len(codes), 1 << 20):  # bounded memory at ten million codes
        chunk = np.bitwise_xor(codes[start : start + (1 << 20)], query)
        at_last += int((POPCOUNT[chunk].sum(1, dtype=np.int32) == last).sum())
    return at_last - int((np.asarray(shown) == last).sum())


def fingerprint(state: dict) -> str:
    """sha256 (hex) of a checkpoint's model config (JSON) and model tensors (name, dtype, shape,
    bytes): it changes when anything that makes the codes changes, not with the optimizer state."""
    h = hashlib.sha256(json.dumps(state["model_config"], sort_keys=True).encode())
    for name in sorted(state["model"]):
        t = state["model"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


INDEX_FILES = ("meta.json", "codes.npz", "items.json", *(f"{m}.faiss" for m in MODALITIES))


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that holds an index without --overwrite, or anything this tool did not
    write (named: --overwrite replaces the index's own files, never a file of yours)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if not out.is_dir():
        return
    foreign = sorted(
        n for n in os.listdir(out) if n not in INDEX_FILES and not n.startswith(".")
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(
            f"--out {out} holds what an index does not: {shown}. Move it out of the folder, "
            "or choose another --out"
        )
    if (out / "meta.json").is_file() and not overwrite:
        raise UserError(f"--out {out} already holds an index; pass --overwrite to replace it")


def write_index_dir(out: Path, encoded: dict, data, meta: dict, overwrite: bool) -> None:
    """Build the faiss indexes and write them, the codes, items and meta into `out` under its
    one-writer lock (an index already there is replaced only with `overwrite`). Each file is
    written whole (atomic_path); meta.json, which makes the folder an index, goes first and
    comes back last."""
    with writing_folder(out, "an index build", done_when="meta.json"):
        check_out(out, overwrite)  # again, now that no other build can write here
        packed = {m: pack_codes(encoded[m]) for m in meta["modalities"]}
        items = [data.items[row] for row in data.rows([int(i) for i in encoded["ids"]])]
        fields = {"ids": "id", "captions": "caption", "labels": "labels"}
        table = {key: [it[field] for it in items] for key, field in fields.items()}
        table["images"] = [str(data.image_path(it).resolve()) for it in items]
        table["label_names"] = list(data.label_names)
        (out / "meta.json").unlink(missing_ok=True)
        for name in INDEX_FILES[1:]:  # an earlier index's other modality
            (out / name).unlink(missing_ok=True)
        for m, codes in packed.items():
            index = build_index(codes, meta["kind"], meta["params"])
            with atomic_path(out / f"{m}.faiss") as tmp:
                faiss.write_index_binary(index, str(tmp))
        with atomic_path(out / "codes.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **packed)
        write_text_atomic(out / "items.json", json.dumps(table, ensure_ascii=False))
        write_text_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n")


@dataclass
class Index:
    """An index folder in memory: meta.json, items.json, packed codes per modality."""

    root: Path
    meta: dict
    items: dict
    codes: dict[str, np.ndarray]  # modality -> uint8 [N, ceil(bits/8)]

    def faiss_index(self, modality: str, params: dict):
        path = self.root / f"{modality}.faiss"
        index = faiss.read_index_binary(str(path))
        if index.d != 8 * self.codes[modality].shape[1] or index.ntotal != self.meta["n_items"]:
            raise UserError(
                f"{path} holds {index.ntotal} codes of {index.d} bits; meta.json says "
                f"{self.meta['n_items']} of {self.meta['bits']} bits: rebuild the index"
            )
        set_search_params(index, params)
        return index

    def row(self, item_id: int) -> int | None:
        return self.items["ids"].index(item_id) if item_id in self.items["ids"] else None


def check_index_folder(root: str | Path) -> None:
    """UserError unless ``root`` holds an index's meta.json (cheap: before anything is loaded)."""
    if not (Path(root) / "meta.json").is_file():
        raise UserError(f"--index {root} is not an index folder (no meta.json); build one first")


def load_index(root: str | Path) -> Index:
    """Read an index folder written by `retrieve.py index`; UserError if it is not one."""
    root = Path(root)
    check_index_folder(root)
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{root}/meta.json: format_version {meta.get('format_version')} != 1")
    items = json.loads((root / "items.json").read_text(encoding="utf-8"))
    with np.load(root / "codes.npz") as z:
        codes = {m: z[m] for m in meta["modalities"]}
    for m, c in codes.items():
        if c.shape != (meta["n_items"], (meta["bits"] + 7) // 8):
            raise UserError(f"{root}/codes.npz: {m} codes {c.shape} do not match meta.json bits")
    return Index(root, meta, items, codes)
