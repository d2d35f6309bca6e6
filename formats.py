"""Pure parsers for the IAPR TC-12 / SAIAPR TC-12 file formats, and bag-of-words text.

No torch here: everything takes bytes, text or paths and returns plain Python values.
Every malformed input raises :class:`errors.UserError` naming the file (and line where
there is one), the expected and the found value.

Formats (see the README of the metadata folder for the originals):

- IAPR annotation ``annotations_complete_eng/NN/ID.eng``: XML-like, not well-formed
  (a bare ``&`` occurs), cp1252/Latin-1 bytes; the caption is the DESCRIPTION field.
- SAIAPR ``NN/labels.txt``: ``image_id segment_id label_id`` per line; ``wlist.txt``:
  ``label_id<TAB>label_name`` per line.
- Preprocessed lists (``iapr_train``, ``iapr_test``, ``iapr_retrieval``): ``NN/ID.jpg``
  then bag-of-words counts then label bits, whitespace separated.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from errors import UserError

LISTS_BOW_COLUMNS = 2912
LISTS_LABEL_COLUMNS = 255
LIST_FILES = {"train": "iapr_train", "query": "iapr_test", "database": "iapr_retrieval"}

# A fixed English stop-word list (function words only; colour, count and place words stay).
_STOP_WORDS_TEXT = """
about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how if in into is it
its itself just may me might more most must my myself no nor not of off on once only or
other our ours ourselves out over own same shall she should so some such than that the
their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your
yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_DESCRIPTION_OPEN = re.compile(r"<DESCRIPTION\s*>", re.IGNORECASE)
_DESCRIPTION_CLOSE = re.compile(r"</DESCRIPTION\s*>", re.IGNORECASE)
_SURROGATE = re.compile("[\udc80-\udcff]")
_WORD = re.compile(r"[a-z]+")


# --------------------------------------------------------------------------- text decoding
def decode_text(raw: bytes) -> str:
    """Decode annotation bytes: strict UTF-8 first, else cp1252 with Latin-1 for its holes.

    cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; those bytes decode as the
    Latin-1 code points U+0081... instead of failing. A leading UTF-8 BOM is dropped.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    text = raw.decode("cp1252", errors="surrogateescape")
    return _SURROGATE.sub(lambda m: chr(ord(m.group()) - 0xDC00), text)


def read_text(path: Path) -> str:
    """Read a text file as :func:`decode_text` does; UserError if it cannot be read."""
    try:
        return decode_text(Path(path).read_bytes())
    except OSError as exc:
        raise UserError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def normalize_space(text: str) -> str:
    """Collapse every whitespace run (newlines included) to one space and strip the ends."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- IAPR annotation
def parse_annotation(text: str, source: str | Path) -> str:
    """Return the caption (DESCRIPTION field) of one IAPR ``.eng`` annotation.

    Parsed with regular expressions, not an XML parser (the files are not well-formed).
    The first DESCRIPTION is used; whitespace is normalised. An empty DESCRIPTION gives
    ``""`` (the caller drops such items). Raises UserError naming ``source`` if there is
    no ``<DESCRIPTION>`` tag or it is never closed (naming the line it opens on).
    """
    opening = _DESCRIPTION_OPEN.search(text)
    if opening is None:
        raise UserError(f"{source}: no <DESCRIPTION> tag found (expected the caption there)")
    closing = _DESCRIPTION_CLOSE.search(text, opening.end())
    if closing is None:
        line = text.count("\n", 0, opening.start()) + 1
        raise UserError(
            f"{source}:{line}: <DESCRIPTION> opened here has no closing </DESCRIPTION> tag"
        )
    return normalize_space(text[opening.end() : closing.start()])


def read_annotation(path: Path) -> str:
    """Read an ``.eng`` file and return its caption (see :func:`parse_annotation`)."""
    return parse_annotation(read_text(path), path)


# --------------------------------------------------------------------------- SAIAPR labels
class SegmentLabel(NamedTuple):
    """One line of a SAIAPR ``labels.txt`` (``line`` is 1-based, for messages)."""

    image_id: int
    segment_id: int
    label_id: int
    line: int


def parse_saiapr_labels(text: str, source: str | Path) -> list[SegmentLabel]:
    """Parse ``image_id segment_id label_id`` lines (blank lines skipped).

    Raises UserError ``FILE:LINE: expected 3 integer fields ...`` on a bad line.
    """
    rows: list[SegmentLabel] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 3:
                raise ValueError
            image_id, segment_id, label_id = (int(f) for f in fields)
        except ValueError:
            raise UserError(
                f"{source}:{number}: expected 3 integer fields 'image_id segment_id label_id', "
                f"found {line.strip()!r}"
            ) from None
        rows.append(SegmentLabel(image_id, segment_id, label_id, number))
    return rows


def read_saiapr_labels(path: Path) -> list[SegmentLabel]:
    """Read one SAIAPR ``labels.txt`` (see :func:`parse_saiapr_labels`)."""
    return parse_saiapr_labels(read_text(path), path)


def parse_wlist(text: str, source: str | Path) -> dict[int, str]:
    """Parse a SAIAPR label dictionary: ``label_id<TAB>label_name`` (any whitespace) per line.

    Returns {label_id: name}. UserError with file:line on a non-integer id, a missing
    name or a repeated id.
    """
    names: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.strip().split(None, 1)
        if not fields:
            continue
        try:
            if len(fields) != 2:
                raise ValueError
            label_id = int(fields[0])
        except ValueError:
            raise UserError(
                f"{source}:{number}: expected 'label_id<TAB>label_name', found {line.strip()!r}"
            ) from None
        if label_id in names:
            raise UserError(f"{source}:{number}: label id {label_id} is defined twice")
        names[label_id] = fields[1].strip()
    return names


def read_wlist(path: Path) -> dict[int, str]:
    """Read a ``wlist.txt`` (see :func:`parse_wlist`)."""
    return parse_wlist(read_text(path), path)


def check_label_ids(rows: Iterable[SegmentLabel], wlist: dict[int, str], source: Path) -> None:
    """UserError naming ``source``, the line and the id of the first label id not in wlist."""
    for row in rows:
        if row.label_id not in wlist:
            raise UserError(
                f"{source}:{row.line}: label id {row.label_id} is not in the label "
                f"dictionary (wlist.txt, {len(wlist)} ids)"
            )


# --------------------------------------------------------------------------- lists format
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


# --------------------------------------------------------------------------- input layouts
def _require_dirs(root: Path, flag: str, subdirs: tuple[str, ...]) -> None:
    """UserError unless ``root`` (given by ``flag``) exists and holds every sub-folder."""
    if not root.is_dir():
        raise UserError(f"{flag} {root}: folder does not exist")
    missing = [s for s in subdirs if not (root / s).is_dir()]
    if missing:
        raise UserError(f"{flag} {root}: missing sub-folder(s) {', '.join(missing)}")


def read_raw_layout(
    iapr_root: Path, saiapr_root: Path, wlist_path: Path | None
) -> tuple[list[dict], dict[int, str]]:
    """Candidate items of the raw layout (one per ``annotations_complete_eng/NN/ID.eng``)
    and the label dictionary {SAIAPR label id: name}.

    Each item: ``id``, ``image`` (Path), ``caption`` (str), ``labels`` (sorted SAIAPR label
    ids over the item's segments), ``src`` (annotation path).
    """
    _require_dirs(iapr_root, "--iapr-root", ("images", "annotations_complete_eng"))
    _require_dirs(saiapr_root, "--saiapr-root", ())
    label_files = sorted(saiapr_root.glob("*/labels.txt"))
    if not label_files:
        raise UserError(f"--saiapr-root {saiapr_root}: no NN/labels.txt files found")
    wlist_path = wlist_path or saiapr_root / "wlist.txt"
    if not wlist_path.is_file():
        raise UserError(f"label dictionary {wlist_path} not found (set --saiapr-wlist PATH)")
    wlist = read_wlist(wlist_path)
    labels: dict[int, set[int]] = {}
    for path in label_files:
        rows = read_saiapr_labels(path)
        check_label_ids(rows, wlist, path)
        for row in rows:
            labels.setdefault(row.image_id, set()).add(row.label_id)
    items: dict[int, dict] = {}
    for path in sorted((iapr_root / "annotations_complete_eng").glob("*/*.eng")):
        if not path.stem.isdigit():
            raise UserError(f"{path}: expected an annotation named ID.eng with an integer ID")
        item_id = int(path.stem)
        if item_id in items:
            raise UserError(f"{path}: item {item_id} also annotated in {items[item_id]['src']}")
        items[item_id] = {
            "id": item_id,
            "image": iapr_root / "images" / path.parent.name / f"{item_id}.jpg",
            "caption": read_annotation(path),
            "labels": sorted(labels.get(item_id, ())),
            "src": path,
        }
    if not items:
        raise UserError(f"--iapr-root {iapr_root}: no annotations_complete_eng/NN/ID.eng files")
    return [items[i] for i in sorted(items)], wlist


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
        _require_dirs(path, flag, ())
    _require_dirs(annotations_dir, "--annotations", ())
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


def _list_item(row: ListRow, images_dir: Path, annotations_dir: Path) -> dict:
    """A candidate item from a list row; its caption from ``annotations_dir/NN/ID.eng``."""
    annotation = annotations_dir / Path(row.image).parent / f"{row.item_id}.eng"
    caption = read_annotation(annotation) if annotation.is_file() else None
    return {
        "id": row.item_id,
        "image": images_dir / row.image,
        "caption": caption,
        "labels": row.labels,
        "bow": {"indices": row.bow_indices, "counts": row.bow_counts},
        "src": annotation,
    }


# --------------------------------------------------------------------------- bag of words
def tokenize_words(caption: str) -> list[str]:
    """Bag-of-words tokens: case-folded, accents stripped, ``[a-z]+`` runs of 2+ letters,
    stop words (:data:`STOP_WORDS`) removed. Order and repeats are kept."""
    folded = unicodedata.normalize("NFKD", caption.casefold())
    ascii_text = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w for w in _WORD.findall(ascii_text) if len(w) > 1 and w not in STOP_WORDS]


def build_vocab(captions: Iterable[str], size: int = LISTS_BOW_COLUMNS) -> list[str]:
    """The ``size`` most frequent words over ``captions`` (total counts; ties alphabetical)."""
    counts = Counter(w for caption in captions for w in tokenize_words(caption))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [word for word, _ in ranked[:size]]


def bow_vector(caption: str, vocab_index: dict[str, int]) -> tuple[list[int], list[int]]:
    """Sparse bag of words of one caption: (ascending vocabulary indices, counts > 0).

    Words outside ``vocab_index`` (word -> column) are ignored.
    """
    counts = Counter(vocab_index[w] for w in tokenize_words(caption) if w in vocab_index)
    indices = sorted(counts)
    return indices, [counts[i] for i in indices]
