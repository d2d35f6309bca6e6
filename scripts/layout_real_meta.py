"""Lay out the real IAPR TC-12 captions and SAIAPR TC-12 labels as raw files.

Reads the metadata folder (``items.jsonl``, ``label_names.txt``; see its README) and writes
the raw layout that ``python data.py prepare`` reads::

    OUT/iaprtc12/annotations_complete_eng/NN/ID.eng   cp1252, DOC/DOCNO/.../DESCRIPTION tags
    OUT/iaprtc12/images/NN/ID.jpg                     one tiny placeholder JPEG, hard-linked
    OUT/saiapr_tc-12/NN/labels.txt                    "image_id segment_id label_id" lines
    OUT/saiapr_tc-12/wlist.txt                        "label_id<TAB>label_name" lines

The numeric label ids are assigned here, 1..255 in sorted label-name order: they are NOT
the official SAIAPR TC-12 ids (those are not available). The images are placeholders (the
real pictures are not available), so only text-side and label statistics are meaningful.
Item 4092 has no caption in the source: it gets an empty DESCRIPTION, which prepare drops.

Usage: python scripts/layout_real_meta.py --meta ../shared/iapr-tc12-meta --out /tmp/real
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path

from PIL import Image


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meta", type=Path, required=True, help="the iapr-tc12-meta folder")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the layout in")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing layout")
    return parser.parse_args(argv)


def annotation_text(item_id: int, caption: str | None) -> str:
    """An IAPR .eng annotation with the real DESCRIPTION (empty for a missing caption)."""
    folder = f"{item_id // 1000:02d}"
    return (
        f"<DOC>\n<DOCNO>annotations/{folder}/{item_id}.eng</DOCNO>\n<TITLE></TITLE>\n"
        f"<DESCRIPTION>{caption or ''}</DESCRIPTION>\n<NOTES></NOTES>\n<LOCATION></LOCATION>\n"
        f"<DATE></DATE>\n<IMAGE>images/{folder}/{item_id}.jpg</IMAGE>\n"
        f"<THUMBNAIL>thumbnails/{folder}/{item_id}.jpg</THUMBNAIL>\n</DOC>\n"
    )


def place_image(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (copy where links are not supported)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def layout(meta: Path, out: Path) -> dict[str, int]:
    """Write the raw layout of every item in ``meta/items.jsonl`` under ``out``."""
    names = [n.strip() for n in (meta / "label_names.txt").read_text().splitlines() if n.strip()]
    label_id = {name: i for i, name in enumerate(sorted(names), start=1)}
    iapr, saiapr = out / "iaprtc12", out / "saiapr_tc-12"
    saiapr.mkdir(parents=True)
    (saiapr / "wlist.txt").write_text("".join(f"{i}\t{n}\n" for n, i in label_id.items()))
    placeholder = out / "placeholder.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buffer, format="JPEG")
    placeholder.write_bytes(buffer.getvalue())
    labels: dict[str, list[str]] = {}
    count = 0
    with open(meta / "items.jsonl", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            item_id, folder = item["id"], f"{item['id'] // 1000:02d}"
            for sub in ("annotations_complete_eng", "images"):
                (iapr / sub / folder).mkdir(parents=True, exist_ok=True)
            text = annotation_text(item_id, item["caption"])
            (iapr / "annotations_complete_eng" / folder / f"{item_id}.eng").write_bytes(
                text.encode("cp1252")
            )
            place_image(placeholder, iapr / "images" / folder / f"{item_id}.jpg")
            rows = labels.setdefault(folder, [])
            for segment, name in enumerate(item["segment_labels"], start=1):
                rows.append(f"{item_id} {segment} {label_id[name]}\n")
            count += 1
    for folder, rows in labels.items():
        (saiapr / folder).mkdir(exist_ok=True)
        (saiapr / folder / "labels.txt").write_text("".join(rows))
    return {"items": count, "labels": len(label_id), "folders": len(labels)}


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the prepare command for the written layout."""
    args = parse_args(argv)
    if not args.meta.is_dir():
        print(
            f"error: --meta {args.meta}: no such folder (the iapr-tc12-meta folder)",
            file=sys.stderr,
        )
        return 2
    for name in ("items.jsonl", "label_names.txt"):
        if not (args.meta / name).is_file():
            print(f"error: --meta {args.meta}: missing {name}", file=sys.stderr)
            return 2
    targets = [args.out / "iaprtc12", args.out / "saiapr_tc-12", args.out / "placeholder.jpg"]
    if any(t.exists() for t in targets):
        if not args.overwrite:
            print(
                f"error: --out {args.out} already holds a layout; pass --overwrite", file=sys.stderr
            )
            return 2
        for target in targets:
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    counts = layout(args.meta, args.out)
    print(
        f"wrote {counts['items']} items, {counts['labels']} labels in {counts['folders']} folders"
    )
    print(
        f"next: python data.py prepare --iapr-root {args.out / 'iaprtc12'} "
        f"--saiapr-root {args.out / 'saiapr_tc-12'} --out {args.out / 'prepared'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
