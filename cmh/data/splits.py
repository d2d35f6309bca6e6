"""The split of a prepared dataset: drawn once with a seed, and checked whenever it is read.

Protocol (IAPR TC-12: 2,000 queries, 18,000 database, 10,000 train): the queries are drawn
first and the rest is the database; training and validation items are drawn from the
database, disjoint from each other. So no query is ever a training or validation item, and
model selection (validation against training) never sees a query. :func:`check_splits`
re-checks these rules on any ``splits.json``, whatever wrote it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmh.utils.errors import UserError

SPLITS = ("query", "database", "train", "val")
# (a, b, rule): a and b disjoint, or every id of a inside b
RULES = (
    ("query", "database", "disjoint"),
    ("query", "train", "disjoint"),
    ("query", "val", "disjoint"),
    ("train", "val", "disjoint"),
    ("train", "database", "inside"),
    ("val", "database", "inside"),
)


def _check_size(flag: str, requested: int, available: int, what: str) -> None:
    """UserError naming the flag, the requested size and the available count."""
    if requested < 0:
        raise UserError(f"{flag} must be >= 0, got {requested}")
    if requested > available:
        raise UserError(f"{flag} {requested} is larger than the {available} {what}")


def _sample_val(rng: np.random.Generator, database: list[int], train: list[int], n_val: int):
    """``n_val`` ids drawn from database minus train (sorted)."""
    pool = sorted(set(database) - set(train))
    _check_size("--n-val", n_val, len(pool), "database items left after training")
    return sorted(rng.choice(pool, n_val, replace=False).tolist()) if n_val else []


def make_splits(ids: list[int], n_query: int, n_train: int, n_val: int, seed: int):
    """Seeded split: queries; the rest is the database; train and val drawn from it, disjoint.

    Returns {"query", "database", "train", "val": sorted id lists}.
    """
    _check_size(
        "--n-query", n_query, len(ids) - 1, "items available (one must stay in the database)"
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    query = sorted(ids[i] for i in order[:n_query])
    database = sorted(ids[i] for i in order[n_query:])
    _check_size("--n-train", n_train, len(database), "database items available")
    train = sorted(rng.choice(database, n_train, replace=False).tolist()) if n_train else []
    return {
        "query": query,
        "database": database,
        "train": train,
        "val": _sample_val(rng, database, train, n_val),
    }


def lists_splits(given: dict[str, list[int]], kept: set[int], n_val: int, seed: int):
    """The lists' own split restricted to kept items, plus val drawn from database minus train."""
    splits = {k: [i for i in given[k] if i in kept] for k in ("query", "database", "train")}
    rng = np.random.default_rng(seed)
    splits["val"] = _sample_val(rng, splits["database"], splits["train"], n_val)
    return splits


def check_splits(splits: object, known_ids: set[int], source: str | Path) -> None:
    """UserError naming ``source`` (a ``splits.json``), the splits and the first offending id
    unless: the keys are exactly :data:`SPLITS`, each a list of unique integer ids of the
    manifest (``known_ids``), and every rule of :data:`RULES` holds."""
    if not isinstance(splits, dict) or sorted(splits) != sorted(SPLITS):
        raise UserError(f"{source}: expected keys {', '.join(SPLITS)}")
    for name in SPLITS:
        ids = splits[name]
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise UserError(f"{source}: {name} must be a list of integer item ids")
        seen: set[int] = set()
        for i in ids:
            if i not in known_ids:
                raise UserError(f"{source}: {name} holds id {i}, which is not in manifest.jsonl")
            if i in seen:
                raise UserError(f"{source}: {name} holds id {i} twice")
            seen.add(i)
    for a, b, rule in RULES:
        other = set(splits[b])
        if rule == "disjoint":
            bad = next((i for i in splits[a] if i in other), None)
            what = f"is in both {a} and {b}; they must be disjoint"
        else:
            bad = next((i for i in splits[a] if i not in other), None)
            what = f"is in {a} but not in {b}; every {a} item must be a {b} item"
        if bad is not None:
            raise UserError(f"{source}: id {bad} {what}")
