"""Tests for cmh/evaluation/hamming_metrics.py and cmh/evaluation/retrieval_curves.py against plain-Python brute-force
references and hand-computed cases."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from cmh.evaluation import hamming_metrics as metrics
from cmh.evaluation.hamming_metrics import (
    MetricInputError,
    chance_level,
    hamming_distance,
    mean_average_precision,
    relevance,
)
from cmh.evaluation.retrieval_curves import pr_curve_by_radius, precision_at_n
from cmh.utils.errors import UserError

# ---------------------------------------------------------------------------------------------
# Brute-force references: plain Python, one query at a time
# ---------------------------------------------------------------------------------------------


def bf_dist(q: np.ndarray, d: np.ndarray) -> list[int]:
    return [sum(int(a != b) for a, b in zip(q, row, strict=True)) for row in d]


def bf_rel(ql: np.ndarray, dl: np.ndarray) -> list[bool]:
    return [any(a and b for a, b in zip(ql, row, strict=True)) for row in dl]


def bf_ap(order: list[int], rel: list[bool]) -> float:
    """AP of a ranked list: mean precision at the relevant positions, 0 with none."""
    hits, total = 0, 0.0
    for pos, j in enumerate(order, start=1):
        if rel[j]:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def bf_order(dist: list[int], rel: list[bool], how: str = "index", rng=None) -> list[int]:
    """Database indices by distance; ties by 'index', 'relevant_first', 'relevant_last' or
    'random' (a uniformly random order drawn from rng)."""
    u = rng.random(len(dist)) if how == "random" else None
    keys = {
        "index": lambda j: (dist[j], j),
        "relevant_first": lambda j: (dist[j], not rel[j], j),
        "relevant_last": lambda j: (dist[j], rel[j], j),
        "random": lambda j: (dist[j], u[j]),
    }
    return sorted(range(len(dist)), key=keys[how])


def bf_map(qc, dc, ql, dl, how="index", topk=None, rng=None) -> float:
    """Brute-force mAP with ties ordered as in bf_order; AP@K normalised by R_K if topk."""
    aps = []
    for i in range(len(qc)):
        dist, rel = bf_dist(qc[i], dc), bf_rel(ql[i], dl)
        order = bf_order(dist, rel, how, rng)
        aps.append(bf_ap(order[:topk] if topk else order, rel))
    return float(np.mean(aps))


def random_case(seed: int, nq: int, nd: int, bits: int, classes: int, p_label: float = 0.3):
    rng = np.random.default_rng(seed)
    qc = rng.choice([-1, 1], size=(nq, bits))
    dc = rng.choice([-1, 1], size=(nd, bits))
    ql = (rng.random((nq, classes)) < p_label).astype(np.int64)
    dl = (rng.random((nd, classes)) < p_label).astype(np.int64)
    return qc, dc, ql, dl


# ---------------------------------------------------------------------------------------------
# Hand-computed example
# ---------------------------------------------------------------------------------------------

# One query q = [+1, +1] with label 0; bits = 2; the database (index: code, labels, distance):
#   0: [-1, -1]  {0}    d=2  relevant
#   1: [+1, +1]  {1}    d=0  not relevant
#   2: [+1, -1]  {0, 1} d=1  relevant
#   3: [-1, +1]  {1}    d=1  not relevant
#   4: [+1, +1]  {0}    d=0  relevant
HAND_Q = np.array([[1, 1]])
HAND_D = np.array([[-1, -1], [1, 1], [1, -1], [-1, 1], [1, 1]])
HAND_QL = np.array([[1, 0]])
HAND_DL = np.array([[1, 0], [0, 1], [1, 1], [0, 1], [1, 0]])


def test_hand_computed_ties_index():
    # Ranking by (distance, index): 1, 4 | 2, 3 | 0; relevant at positions 2, 3, 5:
    # AP = (1/2 + 2/3 + 3/5) / 3 = (15 + 20 + 18) / 90 = 53/90.
    got = mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, ties="index")
    assert got == pytest.approx(53 / 90, abs=1e-12)


def test_hand_computed_ties_average():
    # Expected precisions per tie group (the 4 tie orders are equally likely):
    #   d=0 {1, 4}: relevant item first (1/1) or second (1/2) -> 3/4
    #   d=1 {2, 3}: one relevant already seen; item 2 at position 3 (2/3) or 4 (2/4) -> 7/12
    #   d=2 {0}:    position 5 with 3 relevant -> 3/5
    # AP = (3/4 + 7/12 + 3/5) / 3 = (45 + 35 + 36) / 180 = 116/180 = 29/45.
    got = mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, ties="average")
    assert got == pytest.approx(29 / 45, abs=1e-12)


def test_hand_computed_topk():
    # Top 3 by (distance, index): 1 (no), 4 (yes), 2 (yes); R_3 = 2:
    # AP@3 = (1/2 + 2/3) / 2 = 7/12.
    got = mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, topk=3)
    assert got == pytest.approx(7 / 12, abs=1e-12)
    # Top 1 holds no relevant item -> AP@1 = 0.
    assert mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, topk=1) == 0.0


def test_query_without_relevant_items_counts_as_zero():
    ql = np.array([[1, 0], [0, 0]])  # the second query has no label: nothing is relevant
    qc = np.array([[1, 1], [1, 1]])
    for ties, one in (("index", 53 / 90), ("average", 29 / 45)):
        got = mean_average_precision(qc, HAND_D, ql, HAND_DL, ties=ties)
        assert got == pytest.approx(one / 2, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Against brute force
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,bits", [(0, 2), (1, 3), (2, 4), (3, 8)])
def test_map_index_matches_brute_force(seed, bits, monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK", 4)  # several chunks, one of them partial
    qc, dc, ql, dl = random_case(seed, nq=11, nd=40, bits=bits, classes=5)
    for topk in (None, 1, 7, 40, 100):
        want = bf_map(qc, dc, ql, dl, "index", topk)
        got = mean_average_precision(qc, dc, ql, dl, ties="index", topk=topk)
        assert got == pytest.approx(want, abs=1e-12), topk


@pytest.mark.parametrize("popcount", [True, False])
def test_map_wide_codes_use_uint16_distances(popcount, monkeypatch):
    if popcount and not hasattr(np, "bitwise_count"):
        pytest.skip("numpy < 2.0 has no bitwise_count")
    monkeypatch.setattr(metrics, "_USE_POPCOUNT", popcount)
    qc, dc, ql, dl = random_case(4, nq=5, nd=30, bits=300, classes=4)
    want = bf_map(qc, dc, ql, dl, "index")
    assert mean_average_precision(qc, dc, ql, dl) == pytest.approx(want, abs=1e-12)
    np.testing.assert_array_equal(hamming_distance(qc, dc), [bf_dist(q, dc) for q in qc])


def all_tie_orders_map(qc, dc, ql, dl) -> float:
    """Exact expected mAP by enumerating every order within every tie group."""
    aps = []
    for i in range(len(qc)):
        dist, rel = bf_dist(qc[i], dc), bf_rel(ql[i], dl)
        groups = [[j for j in range(len(dc)) if dist[j] == b] for b in sorted(set(dist))]
        orders = itertools.product(*(itertools.permutations(g) for g in groups))
        values = [bf_ap([j for g in combo for j in g], rel) for combo in orders]
        aps.append(sum(values) / len(values))
    return float(np.mean(aps))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_average_equals_enumeration_of_tie_orders(seed):
    # nd = 7 at 2 bits: at most 7! = 5040 orders per query, so exact enumeration is cheap.
    qc, dc, ql, dl = random_case(seed, nq=4, nd=7, bits=2, classes=3, p_label=0.4)
    want = all_tie_orders_map(qc, dc, ql, dl)
    got = mean_average_precision(qc, dc, ql, dl, ties="average")
    assert got == pytest.approx(want, abs=1e-12)


def test_map_average_bounds_and_monte_carlo():
    qc, dc, ql, dl = random_case(5, nq=4, nd=30, bits=3, classes=4)
    avg = mean_average_precision(qc, dc, ql, dl, ties="average")
    low = bf_map(qc, dc, ql, dl, "relevant_last")
    high = bf_map(qc, dc, ql, dl, "relevant_first")
    assert low < avg < high  # 3 bits over 30 items: mixed tie groups exist, bounds are strict
    # Monte-Carlo over 2000 random tie orders: within 5 standard errors of the estimate.
    rng = np.random.default_rng(0)
    samples = np.array([bf_map(qc, dc, ql, dl, "random", rng=rng) for _ in range(2000)])
    stderr = samples.std(ddof=1) / math.sqrt(len(samples))
    assert 0 < stderr < 0.005
    assert abs(samples.mean() - avg) < 5 * stderr


def test_map_average_ignores_database_order_and_equals_index_without_ties():
    qc, dc, ql, dl = random_case(6, nq=9, nd=50, bits=3, classes=4)
    perm = np.random.default_rng(1).permutation(len(dc))
    a = mean_average_precision(qc, dc, ql, dl, ties="average")
    b = mean_average_precision(qc, dc[perm], ql, dl[perm], ties="average")
    assert a == pytest.approx(b, abs=1e-12)
    # Distinct distances 0..4 from the query: no ties, so both policies agree.
    qc1 = np.ones((1, 4), dtype=int)
    dc1 = np.array([[1 if k >= j else -1 for k in range(4)] for j in range(5)])[::-1]
    dl1 = np.array([[1], [0], [1], [1], [0]])
    one = np.ones((1, 1), dtype=int)
    idx = mean_average_precision(qc1, dc1, one, dl1, ties="index")
    assert mean_average_precision(qc1, dc1, one, dl1, ties="average") == pytest.approx(idx)


def test_random_ranking_expected_map_and_chance_level():
    # Identical codes put the whole database in one tie group: ties="average" is then the
    # expected AP of a uniformly random ranking, which chance_level bounds from below.
    _, _, ql, dl = random_case(7, nq=12, nd=60, bits=1, classes=6, p_label=0.2)
    qc, dc = np.ones((12, 3), dtype=int), np.ones((60, 3), dtype=int)
    rand_map = mean_average_precision(qc, dc, ql, dl, ties="average")
    chance = chance_level(ql, dl)
    nd, h = 60, sum(1 / k for k in range(1, 61))
    r = np.array([sum(bf_rel(q, dl)) for q in ql])
    exact = np.where(r > 0, (h + (r - 1) / (nd - 1) * (nd - h)) / nd, 0.0).mean()
    assert rand_map == pytest.approx(exact, abs=1e-12)
    assert chance <= rand_map <= chance + (h - 1) / nd
    assert chance == pytest.approx(r.mean() / nd, abs=1e-15)


@pytest.mark.parametrize("popcount", [True, False])
def test_hamming_distance_and_relevance_match_brute_force(popcount, monkeypatch):
    if popcount and not hasattr(np, "bitwise_count"):
        pytest.skip("numpy < 2.0 has no bitwise_count")
    monkeypatch.setattr(metrics, "_USE_POPCOUNT", popcount)
    qc, dc, ql, dl = random_case(8, nq=6, nd=150, bits=16, classes=5)  # 3 bitmap words
    dist = hamming_distance(qc, dc)
    assert dist.dtype.kind == "i"
    np.testing.assert_array_equal(dist, [bf_dist(q, dc) for q in qc])
    rel = relevance(ql.astype(bool), dl.astype(np.float32))
    assert rel.dtype == np.bool_
    np.testing.assert_array_equal(rel, [bf_rel(q, dl) for q in ql])


def test_precision_at_n_matches_brute_force(monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK", 3)
    qc, dc, ql, dl = random_case(9, nq=8, nd=30, bits=3, classes=4)
    ns = [1, 5, 13, 30]
    want = np.zeros(len(ns))
    for i in range(len(qc)):
        dist, rel = bf_dist(qc[i], dc), bf_rel(ql[i], dl)
        order = bf_order(dist, rel)
        want += [sum(rel[j] for j in order[:n]) / n for n in ns]
    got = precision_at_n(qc, dc, ql, dl, ns)
    np.testing.assert_allclose(got, want / len(qc), atol=1e-12)


def test_pr_curve_by_radius_matches_brute_force(monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK", 3)
    qc, dc, ql, dl = random_case(10, nq=7, nd=12, bits=6, classes=4, p_label=0.15)
    ql[0] = 0  # one query without relevant items: recall 0 by convention
    prec, rec, empty = np.zeros(7), np.zeros(7), 0
    for i in range(len(qc)):
        dist, rel = bf_dist(qc[i], dc), bf_rel(ql[i], dl)
        for t in range(7):
            got_items = [j for j in range(len(dc)) if dist[j] <= t]
            hits = sum(rel[j] for j in got_items)
            prec[t] += hits / len(got_items) if got_items else 0.0
            empty += not got_items
            rec[t] += hits / sum(rel) if sum(rel) else 0.0
    p, r = pr_curve_by_radius(qc, dc, ql, dl)
    assert p.shape == r.shape == (7,)
    np.testing.assert_allclose(p, prec / len(qc), atol=1e-12)
    np.testing.assert_allclose(r, rec / len(qc), atol=1e-12)
    assert empty > 0  # the empty-retrieval convention (precision 0) was exercised


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    qc, dc, ql, dl = random_case(11, nq=5, nd=20, bits=4, classes=3)
    want = mean_average_precision(qc, dc, ql, dl, ties="average")
    tq = torch.tensor(qc, dtype=torch.float32, requires_grad=True)
    got = mean_average_precision(
        tq, torch.tensor(dc), torch.tensor(ql).bool(), torch.tensor(dl).float(), ties="average"
    )
    assert got == pytest.approx(want, abs=1e-12)
    np.testing.assert_array_equal(hamming_distance(tq, torch.tensor(dc)), hamming_distance(qc, dc))
    half = mean_average_precision(
        tq.bfloat16(), torch.tensor(dc).half(), torch.tensor(ql), torch.tensor(dl), ties="average"
    )
    assert half == pytest.approx(want, abs=1e-12)


def test_benchmark_smoke_matches_reference_loop(capsys):
    # bench/bench_eval.py compares ties="index" with a DCMH-style per-query loop and returns 1
    # when they differ by more than 1e-9 or a tie policy takes over 1 s (the failing runs are
    # in tests/bench/test_benches.py).
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_eval.py"
    spec = importlib.util.spec_from_file_location("bench_eval", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--nq", "30", "--nd", "300", "--bits", "16", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "|index - reference| = 0.000e+00 (target <= 1e-09): met" in out
    assert out.count("(target <= 1 s): met") == 2 and "MISSED" not in out
    assert "OK: ties='index' mAP identical" in out


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_codes_raise_with_the_value_and_argument():
    qc, dc, ql, dl = random_case(12, nq=3, nd=6, bits=4, classes=3)
    qc = qc.astype(float)
    qc[1, 2] = 0.0
    with pytest.raises(
        ValueError, match=r"codes must be ±1; found value 0 in query_codes at \[1, 2\]"
    ):
        mean_average_precision(qc, dc, ql, dl)
    dc = dc.astype(float)
    dc[0, 0] = 0.5
    with pytest.raises(UserError, match="found value 0.5 in db_codes"):
        hamming_distance(np.ones((1, 4)), dc)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: {"db_codes": a["db_codes"][:, :3]}, "query_codes has 4 bits but db_codes has 3"),
        (lambda a: {"db_labels": a["db_labels"][:, :2]}, "3 classes but db_labels has 2"),
        (lambda a: {"query_labels": a["query_labels"][:2]}, "3 rows but query_labels has 2"),
        (
            lambda a: {"db_labels": a["db_labels"] * 2},
            "labels must be multi-hot 0/1; found value 2 in db_labels",
        ),
        (lambda a: {"query_codes": a["query_codes"][0]}, "non-empty 2-D array; found shape"),
        (lambda a: {"ties": "random"}, "ties must be 'index' or 'average'"),
        (lambda a: {"topk": 0}, "topk must be an int >= 1"),
        (lambda a: {"topk": 2.5}, "topk must be an int >= 1"),
        (lambda a: {"ties": "average", "topk": 5}, "not supported"),
    ],
)
def test_bad_inputs_raise(change, match):
    qc, dc, ql, dl = random_case(13, nq=3, nd=6, bits=4, classes=3)
    args = {"query_codes": qc, "db_codes": dc, "query_labels": ql, "db_labels": dl}
    args.update(change(args))
    with pytest.raises(MetricInputError, match=match):
        mean_average_precision(**args)


def test_bad_cutoffs_raise():
    qc, dc, ql, dl = random_case(14, nq=3, nd=6, bits=4, classes=3)
    for ns in ([0], [7], [], [1.5]):
        with pytest.raises(MetricInputError, match="ns must"):
            precision_at_n(qc, dc, ql, dl, ns)


def test_too_many_bits_raise():
    codes = np.ones((1, 32768), dtype=np.int8)
    with pytest.raises(MetricInputError, match="32768 bits; at most 32767"):
        mean_average_precision(codes, codes, np.ones((1, 1)), np.ones((1, 1)))
