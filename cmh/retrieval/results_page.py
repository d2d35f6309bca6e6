"""What `retrieve.py query` shows people: result rows, the printed table and the HTML page.

Pure output code: it reads an index's items table (items.json: ids, captions, images, labels,
label_names) and the query info `retrieve.run_query` builds; of our modules it imports only
`cmh.data.caches.image_array`, to show images held in a prepared folder's uint8 array (`ARRAY.u8#ROW`
references): the page gets small JPEG thumbnails of those, written beside it on demand, and
`cmh.data.image_transforms.to_rgb`, the conversion every image read takes.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import numpy as np

from cmh.utils.atomic_io import write_text_atomic

TEXT_MARKS = {None: "-", True: "yes", False: "no"}  # relevant: unknown, yes, no
HTML_MARKS = {None: ("", ""), True: ("rel", " · relevant"), False: ("irr", " · not relevant")}
STYLE = (
    "<style>body{font-family:sans-serif}figure{display:inline-block;width:220px;margin:6px;"
    "vertical-align:top;border:3px solid #ccc}.key{border:3px solid #ccc;padding:0 4px}"
    ".rel{border-color:#2a2}.irr{border-color:#c33}img{width:100%}figcaption{font-size:13px}"
    "</style>"
)
LEGEND = (
    '<p><span class="key rel">green frame</span> relevant to the query item (shares a label '
    'with it) · <span class="key irr">red frame</span> not relevant (no label in common)</p>'
)
NO_LEGEND = "<p>Grey frames: relevance is known only for --item queries (their labels).</p>"
THUMB_PX = 160  # --embed: the longer side of an inlined JPEG thumbnail


class HasItems(Protocol):
    """An index with its items table (retrieve.Index): ids, captions, images, labels (column
    lists per item), label_names."""

    items: dict


def result_rows(
    index: HasItems, dist: np.ndarray, pos: np.ndarray, query_labels: list[int] | None
) -> list[dict]:
    """One dict per retrieved item: rank, id, distance, caption, image, labels, relevant.

    dist, pos: one query's row of `retrieve.search` (int [k]); rows stop at the first position -1
    (an approximate index found fewer items). query_labels: label columns of an --item query, or
    None (relevant is then None)."""
    rows, names = [], index.items["label_names"]
    for rank, (d, p) in enumerate(zip(dist.tolist(), pos.tolist(), strict=True), start=1):
        if p < 0:
            break
        labels = index.items["labels"][p] or []  # a collection's items have no labels
        rel = None if query_labels is None else bool(set(labels) & set(query_labels))
        row = {key[:-1]: index.items[key][p] for key in ("ids", "captions", "images")}
        row |= {"rank": rank, "distance": d, "relevant": rel, "labels": [names[c] for c in labels]}
        row["row"] = p  # the item's row in the index
        rows.append(row)
    return rows


def format_results(info: dict, rows: list[dict], meta: dict, names: list[str]) -> str:
    """The printed table: a header line, then rank, id, Hamming distance, relevant, caption."""
    what = info["modality"]
    if "id" in info:
        labels = "; " + ", ".join(names[c] for c in info["labels"]) if info["labels"] else ""
        what = f"item {info['id']} ({what}{labels})"
    q = info["caption"] if info["modality"] == "text" else _shown(info["image"])
    n = meta.get("counts", {}).get(info["searched"], meta["n_items"])
    head = (
        f"query: {what} {q!r} -> {info['searched']} codes of {meta['split']} "
        f"({n} items, {meta['bits']} bits, {meta['kind']})"
    )
    lines = [head, "rank  id        hamming  relevant  caption"]
    for r in rows:
        rel = TEXT_MARKS[r["relevant"]]
        cap = r["caption"] or f"[image {Path(r['image']).name}]"
        cap = cap if len(cap) <= 70 else cap[:67] + "..."
        lines.append(f"{r['rank']:>4}  {r['id']!s:<8}  {r['distance']:>7}  {rel:<8}  {cap}")
    if tie_note(info, rows):
        lines.append(tie_note(info, rows))
    return "\n".join(lines)


def tie_note(info: dict, rows: list[dict]) -> str:
    """"+37 more at distance 4 ..." when items not shown tie with the last one shown; else ""."""
    more = info.get("more_tied", 0)
    if not rows or not more:
        return ""
    return (f"+{more} more at distance {rows[-1]['distance']} (tied with the last one shown; "
            "tied items are ranked by database position, so the cut-off among them is arbitrary)")  # fmt: skip


def _shown(path: str) -> str:
    """`path` relative to the working folder when it lies below it, else as is."""
    rel = Path(path).resolve()
    return str(rel.relative_to(Path.cwd())) if rel.is_relative_to(Path.cwd()) else path


def _src(image: str, page: Path) -> str:
    """An <img src> for `image`: relative to the page's folder, else a file: URI. An image held
    in an array has no file to link: its thumbnail is written to PAGE_images/ beside the page."""
    from cmh.data.caches.image_array import parse_ref

    parsed = parse_ref(image)
    if parsed is not None:
        array, row = parsed
        thumb = page.parent / f"{page.stem}_images" / f"{array.stem}-{row}.jpg"
        if not thumb.is_file():
            thumb.parent.mkdir(parents=True, exist_ok=True)
            thumb.write_bytes(file_thumbnail(image))
        image = str(thumb.resolve())
    try:
        return quote(Path(os.path.relpath(image, page.resolve().parent)).as_posix())
    except ValueError:  # another drive (Windows)
        return Path(image).as_uri()


def file_thumbnail(image: str) -> bytes:
    """A JPEG (at most THUMB_PX on its longer side) of an image file or array reference."""
    from PIL import Image

    from cmh.data.caches.image_array import open_ref, parse_ref

    with open_ref(image) if parse_ref(image) is not None else Image.open(image) as im:
        return jpeg_thumbnail(im)


def jpeg_thumbnail(image) -> bytes:
    """JPEG bytes of a PIL image, at most THUMB_PX on its longer side, transparency on white."""
    from cmh.data.image_transforms import to_rgb

    im = to_rgb(image)
    im.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _thumbnail(image: str) -> str:
    """A data: URI of a JPEG thumbnail of `image` (at most THUMB_PX on its longer side)."""
    return "data:image/jpeg;base64," + base64.b64encode(file_thumbnail(image)).decode("ascii")


def query_title(info: dict) -> str:
    """What the query was, in a line: the text, the image's file name, or the item's id."""
    shown = info["caption"] if info["modality"] == "text" else Path(info["image"] or "upload").name
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    if "id" in info:
        return f"item {info['id']} ({info['modality']}): {shown}"
    return f"{info['modality']}: {shown}"


def write_html(path: Path, info: dict, rows: list[dict], meta: dict, embed: bool = False) -> None:
    """A page: the query, a legend of the frames, then each result's image, caption, labels and
    distance. Images are linked relative to the page, or with `embed` inlined as JPEG thumbnails
    (data: URIs), so the page can be moved or sent on its own."""
    e, path = html.escape, Path(path)

    def src(image: str) -> str:
        return _thumbnail(image) if embed else _src(image, path)

    query = f"<p>{e(info['caption'])}</p>" if info["caption"] else ""
    if info["image"]:
        query = f'<img src="{e(src(info["image"]))}" alt="query" style="width:220px">' + query
    cards = []
    for r in rows:
        cls, mark = HTML_MARKS[r["relevant"]]
        cards.append(
            f'<figure class="{cls}">'
            + (f'<img src="{e(src(r["image"]))}" alt="{e(str(r["id"]))}">' if r["image"] else "")
            + f"<figcaption><b>#{r['rank']}</b> id {e(str(r['id']))} · distance {r['distance']}"
            f"{mark}<br>{e(r['caption'] or '')}<br><small>{e(', '.join(r['labels']))}</small>"
            "</figcaption></figure>"
        )
    page = (
        f'<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{e(query_title(info))} · retrieve</title>{STYLE}"
        f"</head><body><h2>Query ({e(info['modality'])})</h2>{query}"
        f"<h2>Top {len(rows)} in {e(info['searched'])} codes of {e(meta['split'])} "
        f"({meta['bits']} bits, {e(meta['kind'])})</h2>"
        f"{LEGEND if info.get('labels') is not None else NO_LEGEND}{''.join(cards)}"
        f"{f'<p class=ties>{e(tie_note(info, rows))}</p>' if tie_note(info, rows) else ''}"
        "</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, page)
