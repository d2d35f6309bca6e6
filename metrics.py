"""Hamming-ranking retrieval metrics on ±1 hash codes and multi-hot labels (pure numpy).

Every function takes numpy arrays or torch tensors (converted with ``.detach().cpu().numpy()``;
torch itself is never imported here):

- codes: ``[N, bits]`` with values in {-1, +1} only (bool, int or float dtype; a 0 is rejected);
- labels: ``[N, C]`` multi-hot with values in {0, 1} (bool, int or float dtype).

A database item is *relevant* to a query when they share at least one label. Queries are
processed in chunks of ``_CHUNK`` rows so memory stays at O(chunk * Nd). Hamming distances
take only ``bits + 1`` values, which the ranking code exploits (a radix-sorted stable argsort
for ties by index, per-distance bucket counts for averaged ties).

Bad input raises :class:`MetricInputError`, which is both an ``errors.UserError`` and a
``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from errors import UserError

_CHUNK = 256  # queries per chunk: bounds the [chunk, Nd] temporaries


class MetricInputError(UserError, ValueError):
    """Bad input to a metric: wrong values, shapes or options (message names which)."""


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _as_2d(x: Any, name: str) -> np.ndarray:
    """Return ``x`` (numpy array or torch tensor) as a 2-D numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
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
    """Validated multi-hot labels as float32 ``[N, C]`` in {0, 1}."""
    x = _as_2d(x, name)
    _check_values(x, (0, 1), "labels must be multi-hot 0/1", name)
    return x.astype(np.float32)


def _same_width(a: np.ndarray, b: np.ndarray, what: str, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(
            f"{name_a} has {a.shape[1]} {what} but {name_b} has {b.shape[1]}; they must match"
        )


def _inputs(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the four metric inputs together; return them as float32 arrays."""
    qc, dc = _codes(query_codes, "query_codes"), _codes(db_codes, "db_codes")
    ql, dl = _labels(query_labels, "query_labels"), _labels(db_labels, "db_labels")
    _same_width(qc, dc, "bits", "query_codes", "db_codes")
    _same_width(ql, dl, "classes", "query_labels", "db_labels")
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


def _hamming(qc: np.ndarray, dc_t: np.ndarray, dtype: type) -> np.ndarray:
    """Hamming distances ``(bits - Q·Dᵀ) / 2`` from float32 ±1 codes (``dc_t`` is ``Dᵀ``)."""
    bits = qc.shape[1]
    return ((bits - qc @ dc_t) * 0.5).astype(dtype)


def hamming_distance(query_codes: Any, db_codes: Any) -> np.ndarray:
    """Hamming distances between ±1 codes.

    Args:
        query_codes: ``[Nq, bits]`` in {-1, +1}.
        db_codes: ``[Nd, bits]`` in {-1, +1}.

    Returns:
        int32 ``[Nq, Nd]`` in ``0..bits``, computed as ``(bits - Q·Dᵀ) / 2`` (exact: the float32
        matrix product of ±1 values is an exact integer for ``bits < 2**24``).
    """
    qc, dc = _codes(query_codes, "query_codes"), _codes(db_codes, "db_codes")
    _same_width(qc, dc, "bits", "query_codes", "db_codes")
    return _hamming(qc, np.ascontiguousarray(dc.T), np.int32)


def relevance(query_labels: Any, db_labels: Any) -> np.ndarray:
    """Ground-truth relevance: bool ``[Nq, Nd]``, True where query and item share >= 1 label.

    Args:
        query_labels: ``[Nq, C]`` multi-hot in {0, 1}.
        db_labels: ``[Nd, C]`` multi-hot in {0, 1}.
    """
    ql, dl = _labels(query_labels, "query_labels"), _labels(db_labels, "db_labels")
    _same_width(ql, dl, "classes", "query_labels", "db_labels")
    return (ql @ dl.T) > 0  # float32 counts of shared labels are exact integers


def _chunks(
    qc: np.ndarray, dc: np.ndarray, ql: np.ndarray, dl: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(dist, rel)`` per chunk of queries: dist uint8/uint16 ``[c, Nd]``, rel bool."""
    dtype = np.uint8 if qc.shape[1] <= 255 else np.uint16
    dc_t, dl_t = np.ascontiguousarray(dc.T), np.ascontiguousarray(dl.T)
    for start in range(0, qc.shape[0], _CHUNK):
        stop = start + _CHUNK
        yield _hamming(qc[start:stop], dc_t, dtype), (ql[start:stop] @ dl_t) > 0


def _rel_sorted(dist: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Relevance in ranking order ``[c, Nd]``: by distance, ties by database index (ascending).

    ``kind="stable"`` on uint8/uint16 keys is numpy's O(n) radix sort.
    """
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(rel, order, axis=1)


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
    sums = hits @ (1.0 / np.arange(1, k + 1, dtype=np.float64))
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
    dl_t = np.ascontiguousarray(dl.T)
    counts = [((ql[s : s + _CHUNK] @ dl_t) > 0).sum(axis=1) for s in range(0, len(ql), _CHUNK)]
    return float(np.concatenate(counts).mean() / dl.shape[0])


def precision_at_n(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, ns: Sequence[int]
) -> np.ndarray:
    """Mean precision of the top N Hamming-ranked items, for each N in ``ns``.

    Ties are ordered by database index (ascending), as ``ties="index"`` in
    :func:`mean_average_precision`.

    Args:
        query_codes, db_codes, query_labels, db_labels: as in :func:`mean_average_precision`.
        ns: cut-offs, each an int in ``1..Nd``.

    Returns:
        float64 ``[len(ns)]`` in [0, 1]: mean over queries of (relevant in top N) / N.
    """
    qc, dc, ql, dl = _inputs(query_codes, db_codes, query_labels, db_labels)
    cuts = np.asarray(ns)
    nd = dc.shape[0]
    if cuts.ndim != 1 or cuts.size == 0 or cuts.dtype.kind not in "iu":
        raise MetricInputError(f"ns must be a non-empty list of ints; found {ns!r}")
    if cuts.min() < 1 or cuts.max() > nd:
        raise MetricInputError(f"ns must lie in 1..{nd} (the database size); found {ns!r}")
    total = np.zeros(len(cuts), dtype=np.float64)
    for dist, rel in _chunks(qc, dc, ql, dl):
        hits = np.cumsum(_rel_sorted(dist, rel)[:, : cuts.max()], axis=1, dtype=np.int64)
        total += (hits[:, cuts - 1] / cuts).sum(axis=0)
    return total / qc.shape[0]


def pr_curve_by_radius(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of hash lookup: retrieve every item within Hamming radius t.

    For each radius t = 0..bits and each query: retrieved = items at distance <= t,
    precision = relevant retrieved / retrieved, recall = relevant retrieved / relevant in the
    database. Conventions: an empty retrieved set has precision 0; a query with no relevant
    item has recall 0 (both still count in the means, as in mAP).

    Returns:
        ``(precision, recall)``, each float64 ``[bits + 1]`` in [0, 1]: means over queries.
    """
    qc, dc, ql, dl = _inputs(query_codes, db_codes, query_labels, db_labels)
    bits = qc.shape[1]
    prec_sum = np.zeros(bits + 1, dtype=np.float64)
    rec_sum = np.zeros(bits + 1, dtype=np.float64)
    for dist, rel in _chunks(qc, dc, ql, dl):
        n, r = _bucket_counts(dist, rel, bits)
        retrieved, hit = np.cumsum(n, axis=1), np.cumsum(r, axis=1)
        total_rel = hit[:, -1:]
        prec_sum += np.divide(hit, retrieved, out=np.zeros_like(hit), where=retrieved > 0).sum(0)
        rec_sum += np.divide(
            hit, total_rel, out=np.zeros_like(hit), where=np.broadcast_to(total_rel > 0, hit.shape)
        ).sum(0)
    return prec_sum / qc.shape[0], rec_sum / qc.shape[0]
