"""FAISS binary indexes of ±1 hash codes: packing, building, parameters, exact tie order.

Codes are packed 8 bits a byte (bit set for +1, zero padding to whole bytes) into
IndexBinaryFlat (exact), IndexBinaryHNSW, IndexBinaryIVF or IndexBinaryMultiHash (multi-index
hashing, after Norouzi et al.; approximate in FAISS: a code is found when one of its substrings
lies within ``nflip`` bits of the query's). :func:`choose_params` picks each kind's parameters
from the code length and the number of codes; :func:`search` returns evaluate.py's ranking: by
Hamming distance, ties by database position (FAISS itself does not order equal distances; see
its docstring). The index folder that holds them is :mod:`cmh.retrieval.index_folder`.
"""

from __future__ import annotations

import hashlib
import json
import math

import faiss
import numpy as np
import torch

from cmh.utils.errors import UserError

MODALITIES = ("image", "text")
KINDS = ("flat", "hnsw", "ivf", "mih")
# The build parameters of each kind and the search parameters (which a query may override).
BUILD_PARAMS = {"hnsw": ("hnsw_m", "ef_construction"), "ivf": ("nlist",), "mih": ("nhash", "b")}
SEARCH_PARAMS = {"hnsw": ("ef_search",), "ivf": ("nprobe",), "mih": ("nflip",)}
DEFAULTS = {"hnsw_m": 16, "ef_construction": 40, "ef_search": 128, "nprobe": 16, "nflip": 1}


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """±1 codes [N, bits] -> uint8 [N, ceil(bits/8)]: bit set for +1, zero padded (FAISS layout).
    Padding bits are 0 in every code, so Hamming distances are unchanged."""
    return np.ascontiguousarray(np.packbits(np.asarray(codes) > 0, axis=1))


def auto_nlist(n: int) -> int:
    """IVF lists for n items: about sqrt(n), with >= 39 training points per list."""
    return max(1, min(round(math.sqrt(n)), n // 39))


def mih_split(n: int, bits: int) -> tuple[int, int]:
    """(nhash, b) of multi-index hashing for n codes of ``bits``: substrings of b = log2(n) bits
    (Norouzi et al.'s choice: a substring's table then holds about one code per key), between 8
    and 32 and at most ``bits``, and as many of them as fit (nhash = bits // b)."""
    b = min(bits, 32, max(8, round(math.log2(max(n, 2)))))
    return bits // b, b


def choose_params(kind: str, n: int, bits: int, given: dict | None = None) -> dict:
    """The parameters of a ``kind`` index over n codes of ``bits``: those in ``given`` (not
    None), the rest chosen (IVF nlist about sqrt(n); MIH substrings from :func:`mih_split`;
    DEFAULTS otherwise). Only the kind's own parameters are returned."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if given.get("nlist") == 0:  # --nlist 0: chosen
        del given["nlist"]
    chosen = dict(DEFAULTS)
    chosen["nlist"] = auto_nlist(n)
    chosen["nhash"], chosen["b"] = mih_split(n, bits)
    if "b" in given and "nhash" not in given:
        chosen["nhash"] = bits // given["b"]
    names = BUILD_PARAMS.get(kind, ()) + SEARCH_PARAMS.get(kind, ())
    params = {k: given.get(k, chosen[k]) for k in names}
    if kind == "mih" and not 1 <= params["nhash"] * params["b"] <= bits:
        raise UserError(
            f"--nhash {params['nhash']} x --b {params['b']} bits must fit in the {bits}-bit codes"
        )
    return params


def describe(kind: str, params: dict) -> str:
    """``flat`` or ``mih nhash=3 b=20 nflip=1``: an index kind and its parameters, in a line."""
    return " ".join([kind, *(f"{k}={v}" for k, v in params.items())])


def build_index(packed: np.ndarray, kind: str = "flat", params: dict | None = None):
    """A FAISS binary index over packed codes uint8 [N, B] (d = 8B), items at positions 0..N-1.

    params: those :func:`choose_params` returns (missing ones are chosen the same way)."""
    d = 8 * packed.shape[1]
    p = choose_params(kind, len(packed), d, params)
    if kind == "flat":
        index = faiss.IndexBinaryFlat(d)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(d, p["hnsw_m"])
        index.hnsw.efConstruction = p["ef_construction"]
    elif kind == "ivf":
        if not 1 <= p["nlist"] <= len(packed):
            raise UserError(f"--nlist must be in 1..{len(packed)} (the items), got {p['nlist']}")
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, p["nlist"])
        index.cp.max_points_per_centroid = 64  # k-means on <= 64 * nlist sampled codes
        index.train(packed)
    elif kind == "mih":
        index = faiss.IndexBinaryMultiHash(d, p["nhash"], p["b"])
    else:
        raise UserError(f"--kind must be one of {KINDS}, got {kind!r}")
    index.add(packed)
    set_search_params(index, p)
    return index


def set_search_params(index, params: dict) -> None:
    """efSearch (HNSW), nprobe (IVF, at most nlist) and nflip (MIH) from params where given."""
    if hasattr(index, "hnsw") and params.get("ef_search"):
        index.hnsw.efSearch = params["ef_search"]
    if hasattr(index, "nprobe") and params.get("nprobe"):
        index.nprobe = min(params["nprobe"], index.nlist)
    if hasattr(index, "nflip") and params.get("nflip") is not None:
        index.nflip = params["nflip"]


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


