"""Twemoji: a real image-text set from two npm packages (``data.py prepare --twemoji``).

    npm pack emoji-datasource-twitter@16.0.0 emojilib@4.0.3   # then untar each (-> package/)
    python data.py prepare --twemoji twitter/package --emojilib emojilib/package --out DATA

Input (each DIR an unpacked package):

- ``--twemoji DIR``: ``DIR/emoji.json``, a list of emoji objects (``name``, or ``short_name``
  when the name is null; ``unified``, hex code points joined by "-"; ``image``; ``category``;
  ``subcategory``; ``has_img_twitter``; ``sort_order``; optional ``skin_variations``), and their
  64 x 64 RGBA images ``DIR/img/twitter/64/<image>``;
- ``--emojilib DIR``: ``DIR/dist/emoji-en-US.json``, {emoji character: [keywords]}. A character
  is looked up exactly, then with every U+FE0F (variation selector 16) removed on both sides.

Items: every base object with ``has_img_twitter`` true, outside category "Component" (skin-tone
swatches, hair styles), whose image exists and decodes; skin-tone variants (``skin_variations``)
are never items. Ids 1..N in ``sort_order`` order (ties by ``unified``). An emoji whose image is
missing or unreadable is dropped (``summary.json`` ``dropped``, ``id`` = its ``unified``).

Caption (:func:`caption`): ``"name; keyword, keyword, ..."``: the lower-cased name, then the
emojilib keywords lower-cased with underscores as spaces, de-duplicated in order, the name itself
not repeated; just ``"name"`` for an emoji emojilib lacks. E.g. ``"grinning face; smile, happy"``.
Labels: multi-hot over the sorted names ``category:<category>`` and ``subcategory:<subcategory>``
(two per item). Images: composited on white by their alpha channel (:func:`cmh.data.image_transforms.to_rgb`),
stored as RGB rows of the prepared folder's uint8 array (:mod:`cmh.data.caches.image_array`), lossless.
Split (:func:`cmh.data.splits.make_splits`): 200 queries, 1,000 training and 100 validation items
unless ``--n-query`` / ``--n-train`` / ``--n-val`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cmh.data.caches import image_array
from cmh.data.image_transforms import to_rgb
from cmh.data.sources.registry import DataSource, register_source
from cmh.data.splits import make_splits
from cmh.utils.errors import UserError

EMOJI_JSON = "emoji.json"
IMAGE_DIR = "img/twitter/64"
KEYWORDS_JSON = "dist/emoji-en-US.json"
SIDE = 64  # the images' side; another size is resized to it (counted in the summary)
COMPONENT = "Component"
FE0F = "\ufe0f"
DEFAULT_SPLIT = {"n_query": 200, "n_train": 1000, "n_val": 100}
FLAGS = {"n_query": "--n-query", "n_train": "--n-train", "n_val": "--n-val"}
BLOCK = 1024  # images per block written into the array
# key -> (accepted types, what the message says is expected)
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str, type(None)), "a string or null"),
    "unified": ((str,), "hex code points joined by '-'"),
    "image": ((str,), "a file name"),
    "category": ((str,), "a string"),
    "subcategory": ((str,), "a string"),
    "has_img_twitter": ((bool,), "true or false"),
    "sort_order": ((int,), "an integer"),
}


# =========================================================================== reading
def read_json(path: Path, flag: str, root: Path) -> Any:
    """Parse ``path``; UserError naming ``flag root`` when it is missing, and the file, line,
    column and character position when it is not valid JSON."""
    if not root.is_dir():
        raise UserError(f"{flag} {root}: folder does not exist")
    if not path.is_file():
        raise UserError(
            f"{flag} {root}: no {path.relative_to(root).as_posix()} ({path}); give the folder of "
            "the unpacked npm package (the package/ folder the tarball unpacks into)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg}, character {exc.pos})"
        ) from None


def _check_object(obj: Any, index: int, path: Path) -> None:
    """UserError naming ``path``, the entry's index and the missing or mistyped key."""
    if not isinstance(obj, dict):
        raise UserError(f"{path}: entry {index} is {type(obj).__name__}, expected an object")
    for key, (types, expected) in KEYS.items():
        if key not in obj:
            raise UserError(f"{path}: entry {index} (0-based) has no key {key!r}")
        value = obj[key]
        if not isinstance(value, types) or (key == "sort_order" and isinstance(value, bool)):
            raise UserError(f"{path}: entry {index}: {key!r} must be {expected}, got {value!r}")
    parts = obj["unified"].split("-")
    if not all(p and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise UserError(
            f"{path}: entry {index}: 'unified' {obj['unified']!r} is not hex code "
            "points joined by '-'"
        )
    if obj["name"] is None and not isinstance(obj.get("short_name"), str):
        raise UserError(f"{path}: entry {index}: 'name' is null and there is no 'short_name'")


def read_emoji_json(root: Path) -> list[dict]:
    """The emoji objects of ``root/emoji.json``, each checked (:data:`KEYS`)."""
    path = Path(root) / EMOJI_JSON
    objects = read_json(path, "--twemoji", Path(root))
    if not isinstance(objects, list):
        raise UserError(
            f"{path}: expected a JSON list of emoji objects, found a {type(objects).__name__}"
        )
    for index, obj in enumerate(objects):
        _check_object(obj, index, path)
    return objects


def read_keywords(root: Path) -> dict[str, list[str]]:
    """{emoji character: keywords} of ``root/dist/emoji-en-US.json``, checked."""
    path = Path(root) / KEYWORDS_JSON
    table = read_json(path, "--emojilib", Path(root))
    if not isinstance(table, dict):
        raise UserError(
            f"{path}: expected a JSON object {{emoji: [keywords]}}, found a {type(table).__name__}"
        )
    for key, words in table.items():
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise UserError(
                f"{path}: key {key!r}: expected a list of keyword strings, got {words!r}"
            )
    return table


# =========================================================================== items
def emoji_char(unified: str) -> str:
    """The character string of ``unified`` ("1F1EE-1F1F8" -> the flag of Israel)."""
    return "".join(chr(int(h, 16)) for h in unified.split("-"))


def loose_index(table: dict[str, list[str]]) -> dict[str, list[str]]:
    """``table`` keyed by the characters without U+FE0F (the first key wins a collision)."""
    loose: dict[str, list[str]] = {}
    for key, words in table.items():
        loose.setdefault(key.replace(FE0F, ""), words)
    return loose


def keywords_for(
    unified: str, table: dict[str, list[str]], loose: dict[str, list[str]]
) -> list[str] | None:
    """The emojilib keywords of ``unified``: exact match first, then both sides without U+FE0F
    (``loose`` = :func:`loose_index` of ``table``); None when emojilib lacks the emoji."""
    char = emoji_char(unified)
    if char in table:
        return table[char]
    return loose.get(char.replace(FE0F, ""))


def _clean(text: str) -> str:
    """Lower case, underscores as spaces, whitespace runs collapsed."""
    return " ".join(text.replace("_", " ").lower().split())


def display_name(obj: dict) -> str:
    """The lower-cased ``name``, or ``short_name`` with underscores as spaces when it is null."""
    return _clean(obj["name"] if obj["name"] is not None else obj["short_name"])


def caption(name: str, keywords: list[str] | None) -> str:
    """``"name; kw1, kw2"``: the keywords cleaned (:func:`_clean`), de-duplicated in order, empty
    ones and the name itself left out; ``"name"`` alone when none is left."""
    name, seen = _clean(name), []
    for word in map(_clean, keywords or ()):
        if word and word != name and word not in seen:
            seen.append(word)
    return f"{name}; {', '.join(seen)}" if seen else name


def label_names_of(objects: list[dict]) -> list[str]:
    """Sorted ``category:<c>`` and ``subcategory:<s>`` names over ``objects``."""
    names = {f"category:{o['category']}" for o in objects}
    return sorted(names | {f"subcategory:{o['subcategory']}" for o in objects})


def labels_of(obj: dict, column: dict[str, int]) -> list[int]:
    """Ascending label columns of ``obj``'s category and subcategory."""
    return sorted(
        {column[f"category:{obj['category']}"], column[f"subcategory:{obj['subcategory']}"]}
    )


def load_pixels(path: Path) -> tuple[np.ndarray | None, str | None, bool]:
    """(uint8 [SIDE, SIDE, 3] composited pixels, None, resized) or (None, drop reason, False)."""
    if not path.is_file():
        return None, "missing image", False
    try:
        with Image.open(path) as image:
            rgb = to_rgb(image)
    except Exception:  # PIL raises many types for broken files; any of them means unreadable
        return None, "unreadable image", False
    resized = rgb.size != (SIDE, SIDE)
    if resized:
        rgb = rgb.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8), None, resized


# =========================================================================== prepare
def check_flags(args) -> None:
    """UserError when --twemoji and --emojilib do not come together (another input's flags are
    refused by cmh.data.sources.registry.select_source)."""
    if args.twemoji is None:
        raise UserError(
            "--emojilib goes with --twemoji DIR (the unpacked emoji-datasource-twitter package)"
        )
    if args.emojilib is None:
        raise UserError(
            "--twemoji needs --emojilib DIR: the unpacked emojilib package, whose "
            f"{KEYWORDS_JSON} gives the captions' keywords"
        )


@dataclass(eq=False)
class TwemojiPlan:
    """What the packages become: kept items (manifest fields, image still to stage), drops,
    label names, split, summary extras and the kept items' pixels (one [SIDE, SIDE, 3] each)."""

    kept: list[dict]
    dropped: list[dict]
    label_names: list[str]
    splits: dict[str, list[int]]
    extra: dict
    pixels: list[np.ndarray] = field(default_factory=list)
    objects: list[dict] = field(default_factory=list)  # the kept items' emoji.json objects
    bow_width: int | None = None


def _collect(args: argparse.Namespace, objects: list[dict], counts: dict) -> TwemojiPlan:
    """Kept items (ids 1..N, labels still to fill in), their objects and pixels, the drops."""
    table = read_keywords(args.emojilib)
    loose = loose_index(table)
    images = Path(args.twemoji) / IMAGE_DIR
    if not images.is_dir():
        raise UserError(f"--twemoji {args.twemoji}: missing image folder {IMAGE_DIR} ({images})")
    planned = TwemojiPlan([], [], [], {}, {})
    for obj in sorted(objects, key=lambda o: (o["sort_order"], o["unified"])):
        if obj["category"] == COMPONENT or not obj["has_img_twitter"]:
            counts["component" if obj["category"] == COMPONENT else "no_twitter_image"] += 1
            continue
        pixels, reason, resized = load_pixels(images / obj["image"])
        if reason is not None:
            if args.strict:
                raise UserError(
                    f"{images / obj['image']}: {reason} (emoji {obj['unified']}, entry of "
                    f"{EMOJI_JSON}); without --strict such emoji are dropped and listed in summary.json"
                )
            planned.dropped.append({"id": obj["unified"], "reason": reason})
            continue
        words = keywords_for(obj["unified"], table, loose)
        counts["without_keywords"] += words is None
        counts["resized"] += resized
        counts["skin_variations"] += len(obj.get("skin_variations") or ())
        planned.kept.append(
            {
                "id": len(planned.kept) + 1,
                "image": None,
                "name": obj["image"],
                "caption": caption(display_name(obj), words),
                "labels": [],
            }
        )
        planned.pixels.append(pixels)
        planned.objects.append(obj)
    return planned


def _split(args: argparse.Namespace, ids: list[int], given: set[str]) -> dict[str, list[int]]:
    """The seeded split of ``ids``; a size error names the defaults that were used."""
    try:
        return make_splits(ids, args.n_query, args.n_train, args.n_val, args.seed)
    except UserError as exc:
        defaults = [f"{FLAGS[k]} {DEFAULT_SPLIT[k]}" for k in DEFAULT_SPLIT if k not in given]
        if not defaults:
            raise
        raise UserError(
            f"{exc} (--twemoji defaults {', '.join(defaults)}, of {len(ids)} usable emoji); "
            "pass smaller sizes"
        ) from None


def plan(args: argparse.Namespace) -> TwemojiPlan:
    """Read and check both packages, build the items, drop unusable ones and split (nothing is
    written; the images wait in memory for :func:`stage_images`)."""
    check_flags(args)
    given = {k for k in DEFAULT_SPLIT if args.get(k) is not None}
    for key, value in DEFAULT_SPLIT.items():
        if key not in given:
            setattr(args, key, value)
    objects = read_emoji_json(args.twemoji)
    counts = dict.fromkeys(
        ("component", "no_twitter_image", "without_keywords", "resized", "skin_variations"), 0
    )
    planned = _collect(args, objects, counts)
    if not planned.kept:
        raise UserError(
            f"--twemoji {args.twemoji}: no usable emoji in {EMOJI_JSON} "
            f"({len(objects)} entries, {len(planned.dropped)} dropped)"
        )
    planned.label_names = label_names_of(planned.objects)
    column = {name: c for c, name in enumerate(planned.label_names)}
    for item, obj in zip(planned.kept, planned.objects, strict=True):
        item["labels"] = labels_of(obj, column)
    planned.splits = _split(args, [item["id"] for item in planned.kept], given)
    planned.extra = {
        "source": "twemoji",
        "seed": args.seed,
        "twemoji": {
            "twemoji": str(Path(args.twemoji).resolve()),
            "emojilib": str(Path(args.emojilib).resolve()),
            "entries": len(objects),
            "excluded_component": counts["component"],
            "excluded_no_twitter_image": counts["no_twitter_image"],
            "skin_variations_not_items": counts["skin_variations"],
            "captions_name_only": counts["without_keywords"],
            "images_resized": counts["resized"],
            "caption_format": "name; keyword, keyword, ...",
        },
    }
    return planned


def stage_images(planned: TwemojiPlan, folder: Path) -> tuple[str, ...]:
    """Write the kept items' pixels into ``folder`` as one uint8 array (row r = item r), point
    each item at its row, record the array in the summary; returns the files written."""
    n, pixels = len(planned.kept), planned.pixels
    blocks = (np.stack(pixels[start : start + BLOCK]) for start in range(0, n, BLOCK))
    meta = image_array.write_array(folder, blocks, n, SIDE, SIDE)
    for row, item in enumerate(planned.kept):
        item["image"] = {"array": meta["file"], "row": row}
    planned.extra["image_array"] = meta
    return (meta["file"], image_array.meta_path(Path(meta["file"])).name)


TWEMOJI = register_source(DataSource(
    "twemoji", "Twemoji images with emojilib keywords, two npm packages",
    selects=("twemoji", "emojilib"), accepts=("n_query", "n_train"),
    plan=plan, stage_images=stage_images, order=10,
))  # fmt: skip
