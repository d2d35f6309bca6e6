"""Hamming-ranking retrieval metrics on ±1 hash codes and multi-hot labels (pure numpy).

Every function takes numpy arrays or torch tensors (converted with ``.detach().cpu().numpy()``;
torch itself is never imported here):

- codes: ``[N, bits]`` with values in {-1, +1} only (int or float dtype; a 0 is rejected);
- labels: ``[N, C]`` multi-hot with values in {0, 1} (bool, int or float dtype).

A database item is *relevant* to a query when they share at least one label. Queries are
processed in chunks of ``_CHUNK`` rows so memory stays at O(chunk * Nd). Hamming distances
(popcounts of packed codes) take only ``bits + 1`` values, which the ranking code exploits (a
radix-sorted stable argsort for ties by index, per-distance bucket counts for averaged ties);
relevance comes from packed per-label bitmaps of the database. Precision@N and PR curves
are in :mod:`cmh.evaluation.retrieval_curves`.

Bad input raises :class:`MetricInputError`, which is both an ``cmh.utils.errors.UserError`` and a
``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cmh.utils.errors import UserError

_CHUNK = 128  # queries per chunk: bounds the [chunk, Nd] temporaries
_MAX_BITS = 32767  # distance * 2 + relevant must fit the uint16 bucket key
_USE_POPCOUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0; else a float32 matrix product


class MetricInputError(UserError, ValueError):
    """Bad input to a metric: wrong values, shapes or options (message names which)."""


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _as_2d(x: Any, name: str) -> np.ndarray:
    """Return ``x`` (numpy array or torch tensor) as a 2-D numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()  # no bf16 in numpy
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise MetricInputError(f"{name} must be a non-empty 2-D array; found shape {x.shape}")
    return x


def _fmt(value: Any) -> str:
    v = value.item() if hasattr(value, "item") else value
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_values(x: np.ndarray, allowed: tuple[int, int], what: str, name: str) -> None:
    ok = (x == allowed[0]) | (x == allowed[1])
    if not ok.all():
        row, col = np.argwhere(~ok)[0]
        raise MetricInputError(
            f"{what}; found value {_fmt(x[row, col])} in {name} at [{row}, {col}]"
        )


def _codes(x: Any, name: str) -> np.ndarray:
    """Validated codes as float32 ``[N, bits]`` in {-1, +1}."""
    x = _as_2d(x, name)
    _check_values(x, (-1, 1), "codes must be ±1", name)
    return x.astype(np.float32)


def _labels(x: Any, name: str) -> np.ndarray:
    """Validated multi-hot labels as bool ``[N, C]``."""
    x = _as_2d(x, name)
    _check_values(x, (0, 1), "labels must be multi-hot 0/1", name)
    return x.astype(bool)


def _same_width(a: np.ndarray, b: np.ndarray, what: str, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(
            f"{name_a} has {a.shape[1]} {what} but {name_b} has {b.shape[1]}; they must match"
        )


def _inputs(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the four metric inputs; return codes as float32 and labels as bool arrays."""
    qc, dc = _codes(query_codes, "query_codes"), _codes(db_codes, "db_codes")
    ql, dl = _labels(query_labels, "query_labels"), _labels(db_labels, "db_labels")
    _same_width(qc, dc, "bits", "query_codes", "db_codes")
    _same_width(ql, dl, "classes", "query_labels", "db_labels")
    if qc.shape[1] > _MAX_BITS:
        raise MetricInputError(f"codes have {qc.shape[1]} bits; at most {_MAX_BITS} are supported")
    for side, codes, labels in (("query", qc, ql), ("db", dc, dl)):
        if codes.shape[0] != labels.shape[0]:
            raise MetricInputError(
                f"{side}_codes has {codes.shape[0]} rows but {side}_labels has "
                f"{labels.shape[0]}; they must match"
            )
    return qc, dc, ql, dl


# ---------------------------------------------------------------------------------------------
# Distances, relevance and the chunked ranking data
# ---------------------------------------------------------------------------------------------


def _pack_codes(codes: np.ndarray) -> np.ndarray:
    """±1 codes ``[N, bits]`` as uint64 words ``[N, ceil(bits/64)]`` (bit set for +1, pad 0)."""
    n, bits = codes.shape
    packed = np.zeros((n, 8 * ((bits + 63) // 64)), dtype=np.uint8)
    packed[:, : (bits + 7) // 8] = np.packbits(codes > 0, axis=1)
    return packed.view(np.uint64)


def _distance_rows(qc: np.ndarray, dc: np.ndarray, dtype: type) -> Callable[[int, int], np.ndarray]:
    """Return ``rows(start, stop)``: Hamming distances of queries start..stop-1, ``[n, Nd]``.

    With numpy >= 2.0, popcount of XOR-ed packed words (no BLAS: a multi-threaded BLAS on this
    small inner dimension is slower than one core). Otherwise one float32 matrix product
    ``[Q, 1] @ [-D/2, bits/2]ᵀ = bits/2 - Q·Dᵀ/2``, exact (partial sums are multiples of 1/2
    below 2**23).
    """
    if _USE_POPCOUNT:
        q_words, d_words_t = _pack_codes(qc), np.ascontiguousarray(_pack_codes(dc).T)

        def popcount_rows(start: int, stop: int) -> np.ndarray:
            q = q_words[start:stop]
            dist = np.zeros((q.shape[0], d_words_t.shape[1]), dtype=dtype)
            for w in range(q.shape[1]):
                dist += np.bitwise_count(q[:, w, None] ^ d_words_t[w])
            return dist

        return popcount_rows
    bits = qc.shape[1]
    q_ext = np.hstack([qc, np.ones((qc.shape[0], 1), np.float32)])
    d_ext_t = np.hstack([-0.5 * dc, np.full((dc.shape[0], 1), bits / 2, np.float32)]).T.copy()
    return lambda start, stop: (q_ext[start:stop] @ d_ext_t).astype(dtype)


def hamming_distance(query_codes: Any, db_codes: Any) -> np.ndarray:
    """Hamming distances between ±1 codes.

    Args:
        query_codes: ``[Nq, bits]`` in {-1, +1}.
        db_codes: ``[Nd, bits]`` in {-1, +1}.

    Returns:
        int32 ``[Nq, Nd]`` in ``0..bits``, equal to ``(bits - Q·Dᵀ) / 2`` (computed exactly, by
        popcount of packed codes or by one float32 matrix product).
    """
    qc, dc = _codes(query_codes, "query_codes"), _codes(db_codes, "db_codes")
    _same_width(qc, dc, "bits", "query_codes", "db_codes")
    rows = _distance_rows(qc, dc, np.int32)
    return np.concatenate([rows(s, s + _CHUNK) for s in range(0, qc.shape[0], _CHUNK)])


def _label_table(dl: np.ndarray) -> np.ndarray:
    """Database label bitmaps: uint64 ``[C+1, ceil(Nd/64)]``; bit j of row c = item j has c.

    The extra last row is all zero (the padding target of :func:`_label_slots`).
    """
    nd, classes = dl.shape
    table = np.zeros((classes + 1, 8 * ((nd + 63) // 64)), dtype=np.uint8)
    table[:classes, : (nd + 7) // 8] = np.packbits(dl.T, axis=1, bitorder="little")
    return table.view(np.uint64)


def _label_slots(ql: np.ndarray) -> np.ndarray:
    """Label indices of each query, intp ``[Nq, max labels]``, padded with C (no label)."""
    counts = ql.sum(axis=1)
    rows, cols = np.nonzero(ql)
    slots = np.full((ql.shape[0], max(int(counts.max()), 1)), ql.shape[1], dtype=np.intp)
    slots[rows, np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)] = cols
    return slots


def _relevance_rows(slots: np.ndarray, table: np.ndarray, nd: int) -> np.ndarray:
    """bool ``[n, Nd]``: the OR of the database bitmaps of each query's labels, unpacked."""
    bitmap = table[slots[:, 0]]
    for k in range(1, slots.shape[1]):
        bitmap |= table[slots[:, k]]
    return np.unpackbits(bitmap.view(np.uint8), axis=1, count=nd, bitorder="little").view(bool)


def relevance(query_labels: Any, db_labels: Any) -> np.ndarray:
    """Ground-truth relevance: bool ``[Nq, Nd]``, True where query and item share >= 1 label.

    Computed from packed per-label bitmaps of the database (an OR over each query's labels).

    Args:
        query_labels: ``[Nq, C]`` multi-hot in {0, 1}.
        db_labels: ``[Nd, C]`` multi-hot in {0, 1}.
    """
    ql, dl = _labels(query_labels, "query_labels"), _labels(db_labels, "db_labels")
    _same_width(ql, dl, "classes", "query_labels", "db_labels")
    return _relevance_rows(_label_slots(ql), _label_table(dl), dl.shape[0])


def _chunks(
    qc: np.ndarray, dc: np.ndarray, ql: np.ndarray, dl: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(dist, rel)`` per chunk of queries: dist uint8/uint16 ``[c, Nd]``, rel bool."""
    distance_rows = _distance_rows(qc, dc, np.uint8 if qc.shape[1] <= 255 else np.uint16)
    table = _label_table(dl)
    for start in range(0, qc.shape[0], _CHUNK):
        stop = start + _CHUNK
        yield (
            distance_rows(start, stop),
            _relevance_rows(_label_slots(ql[start:stop]), table, dl.shape[0]),
        )


def _rel_sorted(dist: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Relevance in ranking order ``[c, Nd]``: by distance, ties by database index (ascending).

    ``kind="stable"`` on uint8/uint16 keys is numpy's O(n) radix sort; a per-row ``take`` is
    about twice as fast as ``take_along_axis`` here.
    """
    order = np.argsort(dist, axis=1, kind="stable")
    out = np.empty_like(rel)
    for row in range(rel.shape[0]):
        np.take(rel[row], order[row], out=out[row])
    return out


def _bucket_counts(dist: np.ndarray, rel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query and distance 0..bits: items ``n`` and relevant items ``r``, float64 [c, bits+1]."""
    key = dist.astype(np.uint16) * np.uint16(2) + rel  # distance * 2 + relevant (bits < 2**15)
    nb = 2 * (bits + 1)
    counts = np.stack([np.bincount(row, minlength=nb) for row in key]).astype(np.float64)
    r = counts[:, 1::2]
    return counts[:, 0::2] + r, r


# ---------------------------------------------------------------------------------------------
# Average precision
# ---------------------------------------------------------------------------------------------


def _ap_index(rel_sorted: np.ndarray) -> np.ndarray:
    """AP per query of a ranked relevance matrix ``[c, K]``, normalised by its relevant count.

    ``AP = (1/R) * sum over relevant positions p (1-based) of (relevant in 1..p) / p``, 0 if R=0.
    """
    k = rel_sorted.shape[1]
    hits = np.cumsum(rel_sorted, axis=1, dtype=np.int32)  # relevant items up to each position
    n_rel = hits[:, -1].astype(np.float64)
    hits *= rel_sorted  # keep the cumulative count only at relevant positions
    sums = np.einsum("ij,j->i", hits, 1.0 / np.arange(1, k + 1, dtype=np.float64))
    return np.divide(sums, n_rel, out=np.zeros_like(sums), where=n_rel > 0)


def _ap_average(n: np.ndarray, r: np.ndarray, harmonic: np.ndarray) -> np.ndarray:
    """Expected AP per query over uniformly random orders within each distance bucket.

    Args:
        n, r: float64 ``[c, bits+1]`` items / relevant items per Hamming distance.
        harmonic: longdouble ``[Nd+1]``, ``harmonic[k] = H_k = sum_{i<=k} 1/i``.

    For a tie group of n items, r relevant, after A items of which RA relevant, slot A+i holds a
    relevant item with probability r/n, and given that, the group's other r-1 relevant items lie
    among its other n-1 slots uniformly, so (i-1)(r-1)/(n-1) of them precede it on average:
        E[sum of precisions] = (r/n) * sum_{i=1..n} (RA + 1 + (i-1)c) / (A+i),  c = (r-1)/(n-1)
                             = (r/n) * [(RA + 1) S + c (n - (A+1) S)],  S = H_{A+n} - H_A,
    using sum_i (i-1)/(A+i) = n - (A+1) S. (c = 0 when n = 1.)
    """
    a = np.cumsum(n, axis=1) - n
    ra = np.cumsum(r, axis=1) - r
    ai, ni = a.astype(np.int64), n.astype(np.int64)
    s = (harmonic[ai + ni] - harmonic[ai]).astype(np.float64)
    safe_n = np.maximum(n, 1.0)
    c = np.where(n > 1, (r - 1.0) / np.maximum(n - 1.0, 1.0), 0.0)
    expected = (r / safe_n) * ((ra + 1.0) * s + c * (n - (a + 1.0) * s))
    total_rel = r.sum(axis=1)
    sums = expected.sum(axis=1)
    return np.divide(sums, total_rel, out=np.zeros_like(sums), where=total_rel > 0)


def _harmonic(n: int) -> np.ndarray:
    """Harmonic numbers ``H_0..H_n`` as longdouble ``[n+1]`` (extra precision for differences)."""
    return np.concatenate(([0], np.cumsum(1 / np.arange(1, n + 1, dtype=np.longdouble))))


def _check_options(ties: str, topk: int | None) -> None:
    if ties not in ("index", "average"):
        raise MetricInputError(f"ties must be 'index' or 'average'; found {ties!r}")
    if topk is None:
        return
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise MetricInputError(f"topk must be an int >= 1 or None; found {topk!r}")
    if ties == "average":
        raise MetricInputError(
            "topk with ties='average' is not supported (the expected AP@K over tie orders has no "
            "simple closed form); use ties='index' with topk"
        )


def mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ties: str = "index",
    topk: int | None = None,
) -> float:
    """Mean average precision of Hamming ranking (relevant = shares at least one label).

    Args:
        query_codes: ``[Nq, bits]`` in {-1, +1}.  db_codes: ``[Nd, bits]`` in {-1, +1}.
        query_labels: ``[Nq, C]`` in {0, 1}.  db_labels: ``[Nd, C]`` in {0, 1}.
        ties: how items at equal Hamming distance are ordered.
            ``"index"``: by database index, ascending (a stable sort on distance; the result
            matches DCMH-style ``calc_map`` with a stable argsort).
            ``"average"``: the expected AP over uniformly random orders within each tie group
            (McSherry & Najork, ECIR 2008), in closed form per distance bucket; independent of the
            database order.
        topk: ``None`` ranks the whole database. An int K >= 1 (``ties="index"`` only; with
            ``"average"`` it raises) gives AP@K: over the first K ranked items,
            ``AP@K = (1/R_K) * sum_{p<=K, item p relevant} precision@p``, where ``R_K`` is the
            number of relevant items within the top K (not all relevant items), and 0 when
            ``R_K = 0``. K > Nd is the same as ranking everything.

    Returns:
        The mean over all queries of AP in [0, 1]. A query with no relevant item in the database
        has AP 0 and still counts in the mean (as in DCMH's evaluation).
    """
    qc, dc, ql, dl = _inputs(query_codes, db_codes, query_labels, db_labels)
    _check_options(ties, topk)
    bits = qc.shape[1]
    ap = np.empty(qc.shape[0], dtype=np.float64)
    harmonic = _harmonic(dc.shape[0]) if ties == "average" else None
    start = 0
    for dist, rel in _chunks(qc, dc, ql, dl):
        if harmonic is None:
            ap[start : start + len(dist)] = _ap_index(_rel_sorted(dist, rel)[:, :topk])
        else:
            ap[start : start + len(dist)] = _ap_average(*_bucket_counts(dist, rel, bits), harmonic)
        start += len(dist)
    return float(ap.mean())


# ---------------------------------------------------------------------------------------------
# Other summaries
# ---------------------------------------------------------------------------------------------


def chance_level(query_labels: Any, db_labels: Any) -> float:
    """Mean over queries of the fraction of the database relevant to the query.

    ``mean_q R_q / Nd`` with ``R_q`` the number of database items sharing a label with query q.
    This is the expected precision at any cut-off of a uniformly random ranking, and a close
    lower bound on its expected AP: for a query with R >= 1 relevant items (Nd >= 2) that is
    ``(H_Nd + (R-1)/(Nd-1) * (Nd - H_Nd)) / Nd`` (``H`` harmonic numbers), which exceeds
    ``R/Nd`` by ``(Nd-R)(H_Nd-1) / (Nd(Nd-1)) <= (H_Nd-1)/Nd``. Queries with ``R_q = 0``
    contribute 0, as in mAP.

    Args:
        query_labels: ``[Nq, C]`` in {0, 1}.  db_labels: ``[Nd, C]`` in {0, 1}.
    """
    ql, dl = _labels(query_labels, "query_labels"), _labels(db_labels, "db_labels")
    _same_width(ql, dl, "classes", "query_labels", "db_labels")
    table, slots = _label_table(dl), _label_slots(ql)
    counts = [
        _relevance_rows(slots[s : s + _CHUNK], table, dl.shape[0]).sum(axis=1)
        for s in range(0, len(ql), _CHUNK)
    ]
    return float(np.concatenate(counts).mean() / dl.shape[0])
