"""Parsers of the raw IAPR TC-12 / SAIAPR TC-12 files, and the raw layout they form.

No torch here: everything takes bytes, text or paths and returns plain Python values.
Every malformed input raises :class:`cmh.utils.errors.UserError` naming the file (and line where
there is one), the expected and the found value.

- IAPR annotation ``annotations_complete_eng/NN/ID.eng``: XML-like, not well-formed
  (a bare ``&`` occurs), cp1252/Latin-1 bytes; the caption is the DESCRIPTION field.
- SAIAPR ``NN/labels.txt``: ``image_id segment_id label_id`` per line; ``wlist.txt``:
  ``label_id<TAB>label_name`` per line.

The preprocessed lists (``iapr_train`` ...) are read by :mod:`cmh.data.sources.iapr_lists`; the bag of
words by :mod:`cmh.data.bag_of_words`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from cmh.utils.errors import UserError

_DESCRIPTION_OPEN = re.compile(r"<DESCRIPTION\s*>", re.IGNORECASE)
_DESCRIPTION_CLOSE = re.compile(r"</DESCRIPTION\s*>", re.IGNORECASE)
_SURROGATE = re.compile("[\udc80-\udcff]")


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


# --------------------------------------------------------------------------- input layouts
def require_dirs(root: Path, flag: str, subdirs: tuple[str, ...]) -> None:
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
    require_dirs(iapr_root, "--iapr-root", ("images", "annotations_complete_eng"))
    require_dirs(saiapr_root, "--saiapr-root", ())
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
