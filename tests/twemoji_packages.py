"""Generated stand-ins for the two npm packages of the Twemoji set (emoji-datasource-twitter and
emojilib): a few special emoji plus generated ones, PNGs with transparent corners."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from cmh.data.sources import twemoji

CATEGORIES = {
    "Smileys & Emotion": ("face-smiling", "face-affection"),
    "People & Body": ("hand-fingers-open", "person"),
    "Flags": ("country-flag", "flag"),
}
GRINNING_COLOUR = (255, 200, 0)
TRANSPARENT = (0, 255, 0, 0)  # what the corners hold: green, but fully transparent
N_GENERATED = 34
N_ITEMS = 4 + N_GENERATED  # specials kept: grinning, white smiling, waving hand, flag


def emoji(name, unified, category, subcategory, sort_order, **extra) -> dict:
    """One emoji.json object (image = the lower-cased unified + .png)."""
    return {"name": name, "unified": unified, "image": f"{unified.lower()}.png",
            "category": category, "subcategory": subcategory, "has_img_twitter": True,
            "sort_order": sort_order, **extra}  # fmt: skip


def rgba_png(path: Path, colour: tuple[int, int, int]) -> None:
    """A 64 x 64 RGBA PNG: transparent (green) outside, opaque ``colour`` in the centre 32 x 32."""
    pixels = np.zeros((64, 64, 4), dtype=np.uint8)
    pixels[:] = TRANSPARENT
    pixels[16:48, 16:48] = (*colour, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGBA").save(path)


def special_emoji() -> list[dict]:
    """The hand-written cases, in sort_order 1..7 (ids 1-4 once three are excluded)."""
    variants = {tone: {"unified": f"1F44B-{tone}", "image": f"1f44b-{tone.lower()}.png",
                       "has_img_twitter": True} for tone in ("1F3FB", "1F3FC", "1F3FD")}  # fmt: skip
    return [
        emoji("GRINNING FACE", "1F600", "Smileys & Emotion", "face-smiling", 1),
        emoji(
            "FACE WITHOUT MOUTH",
            "1F636",
            "Smileys & Emotion",
            "face-smiling",
            2,
            has_img_twitter=False,
        ),
        emoji("WHITE SMILING FACE", "263A-FE0F", "Smileys & Emotion", "face-affection", 3),
        emoji("EMOJI MODIFIER FITZPATRICK TYPE-1-2", "1F3FB", "Component", "skin-tone", 4),
        emoji(
            "WAVING HAND SIGN",
            "1F44B",
            "People & Body",
            "hand-fingers-open",
            5,
            skin_variations=variants,
        ),
        emoji("EMOJI COMPONENT RED HAIR", "1F9B0", "Component", "hair-style", 6),
        emoji(None, "1F1EE-1F1F1", "Flags", "country-flag", 7, short_name="flag_il"),
    ]


def make_packages(root: Path) -> tuple[Path, Path]:
    """Write the fake twitter and emojilib packages under ``root``; returns both folders."""
    twitter, emojilib = root / "twitter/package", root / "emojilib/package"
    objects = special_emoji()
    keywords = {
        "\U0001f600": ["grinning_face", "face", "smile", "Happy", "smile", "grinning face"],
        "\u263a": ["smiling_face", "relaxed", "happy"],  # emoji.json has 263A-FE0F
        "\U0001f44b": ["wave", "hand", "hello"],
    }
    names = list(CATEGORIES)
    for k in range(N_GENERATED):
        category = names[k % 3]
        sub = CATEGORIES[category][(k // 3) % 2]
        objects.append(emoji(f"FAKE EMOJI {k}", f"{0x1F900 + k:X}", category, sub, 10 + k // 2))
        if k % 2 == 0:
            keywords[chr(0x1F900 + k)] = ["fake", f"kw_{k}"]
    for index, obj in enumerate(objects):
        colour = GRINNING_COLOUR if obj["unified"] == "1F600" else (index * 5, 40, 200)
        rgba_png(twitter / twemoji.IMAGE_DIR / obj["image"], colour)
        for variant in (obj.get("skin_variations") or {}).values():
            rgba_png(twitter / twemoji.IMAGE_DIR / variant["image"], (90, 60, 30))
    write_json(twitter / "emoji.json", objects[::-1])  # file order is not sort order
    write_json(emojilib / twemoji.KEYWORDS_JSON, keywords)
    return twitter, emojilib


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
