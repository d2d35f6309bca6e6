"""The preprocessed IAPR TC-12 lists (``iapr_train``, ``iapr_test``, ``iapr_retrieval``).

Each line: ``NN/ID.jpg``, then 2,912 bag-of-words counts, then 255 label bits, whitespace
separated. Captions come from the annotations folder: IAPR's ``NN/ID.eng`` files
(:mod:`cmh.data.sources.iapr_raw`) or, the layout the reference implementation reads, plain-text
``NN/ID.txt`` files whose caption is the last non-empty line (:func:`read_plain_caption`).
Every malformed input raises :class:`cmh.utils.errors.UserError` naming the file and line.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cmh.data.sources.iapr_raw import normalize_space, read_annotation, read_text, require_dirs
from cmh.utils.errors import UserError

LISTS_BOW_COLUMNS = 2912
LISTS_LABEL_COLUMNS = 255
LIST_FILES = {"train": "iapr_train", "query": "iapr_test", "database": "iapr_retrieval"}


class ListRow(NamedTuple):
    """One line of a preprocessed list: the item, its bag of words and its label columns."""

    item_id: int
    image: str  # "NN/ID.jpg" as written, relative to the images folder
    bow_indices: list[int]  # ascending columns with a non-zero count
    bow_counts: list[int]  # the counts, > 0
    labels: list[int]  # ascending label columns whose bit is 1
    line: int


def _fromstring(rest: str, dtype: type) -> np.ndarray:
    """Whitespace-separated numbers; an empty array where numpy cannot read them all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy < 2.3 warns (and stops early) on bad data
            return np.fromstring(rest, dtype=dtype, sep=" ")
    except ValueError:
        return np.empty(0, dtype=dtype)


def _list_values(rest: str, count: int, source: str | Path, number: int) -> np.ndarray:
    """The ``count`` numbers after the image path: int64 where all are integers (fast path),
    else float64; UserError naming the first column that is not a finite number."""
    values = _fromstring(rest, np.int64)
    if values.size == count:
        return values
    values = _fromstring(rest, np.float64)
    if values.size == count and np.isfinite(values).all():
        return values
    for column, field in enumerate(rest.split(), start=2):
        try:
            if not np.isfinite(float(field)):
                raise ValueError
        except ValueError:
            raise UserError(
                f"{source}:{number}: column {column} is not a finite number: {field!r}"
            ) from None
    return np.asarray([float(f) for f in rest.split()], dtype=np.float64)


def _parse_list_line(
    line: str, source: str | Path, number: int, n_bow: int, n_labels: int
) -> ListRow:
    """Parse one non-blank list line (see :func:`parse_lists`)."""
    fields = line.split(None, 1)
    image, rest = fields[0], (fields[1] if len(fields) > 1 else "")
    found = 1 + len(rest.split())
    if found != 1 + n_bow + n_labels:
        raise UserError(
            f"{source}:{number}: expected {1 + n_bow + n_labels} columns (image path, {n_bow} "
            f"bag-of-words counts, {n_labels} label bits), found {found}"
        )
    stem = Path(image).stem
    if not stem.isdigit():
        raise UserError(f"{source}:{number}: expected an image path 'NN/ID.jpg', found {image!r}")
    values = _list_values(rest, found - 1, source, number)
    bow, bits = values[:n_bow], values[n_bow:]
    if (bow < 0).any() or (bow != np.round(bow)).any():
        raise UserError(f"{source}:{number}: bag-of-words counts must be integers >= 0")
    if ((bits != 0) & (bits != 1)).any():
        raise UserError(f"{source}:{number}: label bits must be 0 or 1")
    nonzero = np.flatnonzero(bow)
    return ListRow(
        item_id=int(stem),
        image=image,
        bow_indices=nonzero.tolist(),
        bow_counts=bow[nonzero].astype(np.int64).tolist(),
        labels=np.flatnonzero(bits).tolist(),
        line=number,
    )


def parse_lists(
    text: str,
    source: str | Path,
    n_bow: int = LISTS_BOW_COLUMNS,
    n_labels: int = LISTS_LABEL_COLUMNS,
) -> list[ListRow]:
    """Parse a preprocessed list: ``NN/ID.jpg``, ``n_bow`` counts, ``n_labels`` bits per line.

    Blank lines are skipped. UserError ``FILE:LINE: expected 3168 columns (...), found N``
    on a wrong column count; file:line on a non-number, a negative or fractional count,
    a bit other than 0/1, or an image name whose stem is not an integer id.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append(_parse_list_line(line, source, number, n_bow, n_labels))
    return rows


def read_lists(
    path: Path, n_bow: int = LISTS_BOW_COLUMNS, n_labels: int = LISTS_LABEL_COLUMNS
) -> list[ListRow]:
    """Read one list file (see :func:`parse_lists`)."""
    return parse_lists(read_text(path), path, n_bow, n_labels)


def read_names(path: Path) -> list[str]:
    """One name per non-blank line, stripped (label names, vocabulary)."""
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def _find_list(lists_dir: Path, name: str) -> Path:
    """``lists_dir/name`` or ``lists_dir/name.txt``; UserError naming what is expected."""
    for path in (lists_dir / name, lists_dir / f"{name}.txt"):
        if path.is_file():
            return path
    raise UserError(
        f"--lists {lists_dir}: missing {name} (expected files {', '.join(LIST_FILES.values())})"
    )


def read_lists_layout(
    lists_dir: Path,
    images_dir: Path,
    annotations_dir: Path,
    n_bow: int = LISTS_BOW_COLUMNS,
    n_labels: int = LISTS_LABEL_COLUMNS,
) -> tuple[list[dict], dict[str, list[int]]]:
    """Candidate items of the lists input and its splits {"query", "database", "train": ids}.

    Items as in :func:`read_raw_layout`, with ``labels`` = label columns, ``bow`` =
    {"indices", "counts"} and ``caption`` None where ``annotations_dir/NN/ID.eng`` is missing.
    UserError on an id listed twice in a file, differing between files, or in both the
    query list and the database or training list.
    """
    for flag, path in (("--lists", lists_dir), ("--images", images_dir)):
        require_dirs(path, flag, ())
    require_dirs(annotations_dir, "--annotations", ())
    rows: dict[int, tuple[ListRow, Path]] = {}
    given: dict[str, list[int]] = {}
    for split, name in LIST_FILES.items():
        path = _find_list(lists_dir, name)
        seen: set[int] = set()
        for row in read_lists(path, n_bow, n_labels):
            if row.item_id in seen:
                raise UserError(f"{path}:{row.line}: item {row.item_id} is listed twice")
            seen.add(row.item_id)
            old = rows.setdefault(row.item_id, (row, path))
            if old[0][1:5] != row[1:5]:
                raise UserError(
                    f"{path}:{row.line}: item {row.item_id} differs from its line "
                    f"{old[1]}:{old[0].line}"
                )
        given[split] = sorted(seen)
    for a, b in (("query", "database"), ("query", "train")):
        both = set(given[a]) & set(given[b])
        if both:
            raise UserError(
                f"--lists {lists_dir}: {len(both)} item(s) in both {LIST_FILES[a]} and "
                f"{LIST_FILES[b]} (e.g. {min(both)}); they must be disjoint"
            )
    return [_list_item(rows[i][0], images_dir, annotations_dir) for i in sorted(rows)], given


def read_plain_caption(path: Path) -> str:
    """The caption of a plain-text ``NN/ID.txt`` annotation: its last non-empty line (what the
    reference implementation reads), whitespace normalised; "" for a file without text."""
    lines = [line for line in read_text(path).splitlines() if line.strip()]
    return normalize_space(lines[-1]) if lines else ""


def _list_item(row: ListRow, images_dir: Path, annotations_dir: Path) -> dict:
    """A candidate item from a list row; its caption from ``annotations_dir/NN/ID.eng`` or, when
    there is none, ``NN/ID.txt`` (None when neither exists: dropped as "no annotation")."""
    folder = annotations_dir / Path(row.image).parent
    annotation, plain = folder / f"{row.item_id}.eng", folder / f"{row.item_id}.txt"
    caption = None
    if annotation.is_file():
        caption = read_annotation(annotation)
    elif plain.is_file():
        annotation, caption = plain, read_plain_caption(plain)
    return {
        "id": row.item_id,
        "image": images_dir / row.image,
        "caption": caption,
        "labels": row.labels,
        "bow": {"indices": row.bow_indices, "counts": row.bow_counts},
        "src": annotation,
    }
