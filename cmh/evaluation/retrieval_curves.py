"""Precision@N and precision-recall over the Hamming radius (pure numpy).

Inputs as in :mod:`cmh.evaluation.hamming_metrics` (±1 codes, multi-hot labels, numpy or torch); the same
chunked distance and relevance rows, so memory stays at O(chunk * Nd).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cmh.evaluation.hamming_metrics import (
    MetricInputError,
    _bucket_counts,
    _chunks,
    _inputs,
    _rel_sorted,
)


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
