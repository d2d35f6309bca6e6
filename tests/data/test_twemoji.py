"""``data.py prepare --twemoji DIR --emojilib DIR``: Twemoji images + emojilib keywords.

:func:`make_packages` writes a small fake pair of unpacked npm packages in the documented layout
(``emoji.json`` + ``img/twitter/64/*.png``; ``dist/emoji-en-US.json``): 41 emoji over three
categories and "Component", one with skin-tone variants (their images on disk too), one without
a Twitter image, one with a null name, one whose emojilib key lacks U+FE0F, RGBA images with
transparent corners (green under alpha 0) and an opaque coloured centre. The prepared folder is
checked (captions, labels, pixels composited on white, exclusions, ids, split), then the bad
inputs, and a one-epoch training run on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS
from PIL import Image
from twemoji_packages import (
    CATEGORIES,
    GRINNING_COLOUR,
    N_GENERATED,
    N_ITEMS,
    TRANSPARENT,
    make_packages,
)

import data
import train
from cmh.data.caches.image_array import load_item_image
from cmh.data.sources import twemoji

SIZES = ["--n-query", "5", "--n-train", "20", "--n-val", "4"]
def prepare(tmp_path: Path, *extra: str, out: str = "prep") -> int:
    """data.main(["prepare", --twemoji/--emojilib of tmp_path/pkg (made once), --out, *extra])."""
    if not (tmp_path / "pkg").exists():
        make_packages(tmp_path / "pkg")
    pkg = tmp_path / "pkg"
    argv = ["prepare", "--twemoji", str(pkg / "twitter/package"), "--emojilib",
            str(pkg / "emojilib/package"), "--out", str(tmp_path / out), *extra]  # fmt: skip
    return data.main(argv)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("twemoji")
    assert prepare(root, *SIZES) == 0
    return root / "prep"


@pytest.fixture(scope="module")
def prepared(prepared_dir) -> data.PreparedData:
    return data.load_prepared(prepared_dir)


# --------------------------------------------------------------------------- pure functions
def test_caption_format():
    assert twemoji.caption("grinning face", ["grinning_face", "Smile", "happy", "smile"]) == (
        "grinning face; smile, happy"
    )
    assert twemoji.caption("flag il", None) == "flag il"
    assert twemoji.caption("x", ["x", "", "X"]) == "x"


def test_keywords_match_with_and_without_fe0f():
    table = {"\u263a": ["relaxed"], "\u2764\ufe0f": ["love"], "\U0001f600": ["smile"]}
    loose = twemoji.loose_index(table)
    assert twemoji.keywords_for("263A-FE0F", table, loose) == ["relaxed"]
    assert twemoji.keywords_for("2764", table, loose) == ["love"]
    assert twemoji.keywords_for("1F600", table, loose) == ["smile"]
    assert twemoji.keywords_for("1F601", table, loose) is None
    assert twemoji.emoji_char("1F1EE-1F1F8") == "\U0001f1ee\U0001f1f8"


def test_transparency_is_laid_over_white():
    """Twemoji's RGBA images go through the one conversion every image read takes (to_rgb)."""
    from cmh.data.image_transforms import to_rgb

    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[0, 0] = TRANSPARENT
    pixels[0, 1] = (10, 20, 30, 255)
    pixels[1, 0] = (0, 0, 0, 128)  # half-transparent black: mid grey
    rgb = to_rgb(Image.fromarray(pixels, "RGBA"))
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((1, 0)) == (10, 20, 30)
    assert all(abs(v - 127) <= 1 for v in rgb.getpixel((0, 1)))
    opaque = to_rgb(Image.new("RGB", (1, 1), (1, 2, 3)))
    assert opaque.getpixel((0, 0)) == (1, 2, 3)  # no alpha: unchanged
    gray_alpha = to_rgb(Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), "LA"))
    assert gray_alpha.getpixel((0, 0)) == (255, 255, 255) and gray_alpha.getpixel((1, 0)) == (50, 50, 50)
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0  # entry 0 transparent (a GIF, a palette PNG)
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(palette).getpixel((1, 0)) == (200, 10, 10)


# --------------------------------------------------------------------------- the prepared folder
def test_captions_of_two_items_and_the_null_name(prepared):
    by_id = {item["id"]: item for item in prepared.items}
    assert by_id[1]["caption"] == "grinning face; face, smile, happy"
    assert by_id[2]["caption"] == "white smiling face; smiling face, relaxed, happy"  # no FE0F
    assert by_id[3]["caption"] == "waving hand sign; wave, hand, hello"
    assert by_id[4]["caption"] == "flag il"  # null name: short_name; not in emojilib
    assert by_id[5]["caption"] == "fake emoji 0; fake, kw 0"
    assert by_id[6]["caption"] == "fake emoji 1"


def test_ids_follow_sort_order_ties_by_unified(prepared):
    assert [item["id"] for item in prepared.items] == list(range(1, N_ITEMS + 1))
    names = [item["caption"].split(";")[0] for item in prepared.items]
    assert names[4:] == [f"fake emoji {k}" for k in range(N_GENERATED)]
    assert prepared.items[0]["name"] == "1f600.png"


def test_labels_are_category_and_subcategory(prepared):
    want = sorted([f"category:{c}" for c in CATEGORIES] +
                  [f"subcategory:{s}" for subs in CATEGORIES.values() for s in subs])  # fmt: skip
    assert prepared.label_names == want
    assert (prepared.root / "labels.txt").read_text().splitlines() == want
    named = {it["id"]: [prepared.label_names[c] for c in it["labels"]] for it in prepared.items}
    assert named[1] == ["category:Smileys & Emotion", "subcategory:face-smiling"]
    assert named[4] == ["category:Flags", "subcategory:country-flag"]
    matrix = prepared.label_matrix([1, 3])
    assert matrix.sum(axis=1).tolist() == [2.0, 2.0]


def test_component_no_image_and_skin_variants_are_not_items(prepared):
    files = {item["name"] for item in prepared.items}
    assert len(prepared.items) == N_ITEMS
    assert not {"1f3fb.png", "1f9b0.png", "1f636.png"} & files  # Component, no Twitter image
    assert not any(name.startswith("1f44b-") for name in files)  # the variants' images exist
    assert not any("Component" in n or "skin-tone" in n for n in prepared.label_names)
    summary = json.loads((prepared.root / "summary.json").read_text())
    assert summary["source"] == "twemoji" and summary["dropped"] == []
    counts = summary["twemoji"]
    assert counts["excluded_component"] == 2 and counts["excluded_no_twitter_image"] == 1
    assert counts["skin_variations_not_items"] == 3 and counts["entries"] == N_ITEMS + 3


def test_images_are_composited_on_white(prepared):
    item = prepared.items[0]
    assert isinstance(item["image"], dict)  # a row of the folder's uint8 array
    image = load_item_image(prepared.image_path(item), item["id"], {})
    assert image.mode == "RGB" and image.size == (64, 64)
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((63, 63)) == (255,) * 3
    assert image.getpixel((32, 32)) == GRINNING_COLOUR
    split = "query" if 1 in prepared.splits["query"] else "database"
    ds = data.HashingDataset(prepared, split, image_size=64)  # the evaluation transform
    row = ds.ids.index(1)
    mean, std = torch.tensor(data.IMAGENET_MEAN), torch.tensor(data.IMAGENET_STD)
    pixels = ds[row]["image"] * std[:, None, None] + mean[:, None, None]
    torch.testing.assert_close(pixels[:, 0, 0], torch.ones(3), atol=1e-5, rtol=0)
    want = torch.tensor(GRINNING_COLOUR, dtype=torch.float32) / 255
    torch.testing.assert_close(pixels[:, 32, 32], want, atol=1e-5, rtol=0)


def test_split_sizes_and_protocol(prepared):
    sizes = {k: len(v) for k, v in prepared.splits.items()}
    assert sizes == {"query": 5, "database": N_ITEMS - 5, "train": 20, "val": 4}
    assert not set(prepared.splits["query"]) & set(prepared.splits["train"])


def test_same_seed_same_split_and_the_summary_is_printed(tmp_path, capsys):
    assert prepare(tmp_path, *SIZES, out="a") == 0
    printed = capsys.readouterr().out
    assert f"prepared {N_ITEMS} items" in printed and "splits: query 5" in printed
    assert prepare(tmp_path, *SIZES, out="b") == 0
    assert prepare(tmp_path, *SIZES, "--seed", "1", out="c") == 0
    read = lambda name: (tmp_path / name / "splits.json").read_text()  # noqa: E731
    assert read("a") == read("b") and read("a") != read("c")
    manifest = lambda name: (tmp_path / name / "manifest.jsonl").read_text()  # noqa: E731
    assert manifest("a") == manifest("b")


def test_default_split_sizes(tmp_path, capsys):
    """200 / 1000 / 100 by default: too many for the fake set, and the message says so."""
    assert prepare(tmp_path) == 2
    err = capsys.readouterr().err
    assert "--n-query 200 is larger than" in err and "--twemoji defaults" in err


def test_one_epoch_of_training(prepared_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["--data", str(prepared_dir), "--out", str(out), *TINY_FLAGS, "--epochs", "1"]
    assert train.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results


# --------------------------------------------------------------------------- bad input
def _remove(path: str):
    def change(pkg: Path) -> None:
        target = pkg / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return change


def _write(path: str, text: str):
    return lambda pkg: (pkg / path).write_text(text, encoding="utf-8")


def _edit_emoji(index: int, key: str, value=None):
    """Drop ``key`` of entry ``index`` of emoji.json in file order (or set it to ``value``)."""

    def change(pkg: Path) -> None:
        path = pkg / "twitter/package/emoji.json"
        objects = json.loads(path.read_text(encoding="utf-8"))
        if value is None:
            objects[index].pop(key)
        else:
            objects[index][key] = value
        path.write_text(json.dumps(objects), encoding="utf-8")

    return change


TWITTER, EMOJILIB = "twitter/package", "emojilib/package"
BAD_INPUT = {
    "no_emoji_json": (_remove(f"{TWITTER}/emoji.json"), "package: no emoji.json"),
    "no_keywords": (_remove(f"{EMOJILIB}/dist/emoji-en-US.json"), "no dist/emoji-en-US.json"),
    "no_image_folder": (_remove(f"{TWITTER}/img"), "missing image folder img/twitter/64"),
    "bad_emoji_json": (
        _write(f"{TWITTER}/emoji.json", '[{"name": "X",\n}]'),
        "emoji.json:2:1: invalid JSON (Expecting property name enclosed in double quotes, "
        "character 15)",
    ),
    "bad_keywords": (
        _write(f"{EMOJILIB}/dist/emoji-en-US.json", '{"a": [1, ]}'),
        "emoji-en-US.json:1:11: invalid JSON",
    ),
    "missing_key": (
        _edit_emoji(3, "category"),
        "emoji.json: entry 3 (0-based) has no key 'category'",
    ),
    "wrong_type": (_edit_emoji(0, "sort_order", "x"), "entry 0: 'sort_order' must be an integer"),
    "bad_unified": (_edit_emoji(1, "unified", "1F60G"), "entry 1: 'unified' '1F60G' is not hex"),
    "keywords_not_a_list": (
        _write(f"{EMOJILIB}/dist/emoji-en-US.json", '{"a": "smile"}'),
        "key 'a': expected a list of keyword strings",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_names_the_file(tmp_path, capsys, case):
    change, match = BAD_INPUT[case]
    make_packages(tmp_path / "pkg")
    change(tmp_path / "pkg")
    assert prepare(tmp_path, *SIZES) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err, err
    assert not (tmp_path / "prep" / "summary.json").exists()


def test_null_name_without_short_name(tmp_path, capsys):
    make_packages(tmp_path / "pkg")
    objects = json.loads((tmp_path / "pkg" / TWITTER / "emoji.json").read_text(encoding="utf-8"))
    index = next(i for i, obj in enumerate(objects) if obj["name"] is None)
    _edit_emoji(index, "short_name")(tmp_path / "pkg")
    assert prepare(tmp_path, *SIZES) == 2
    err = capsys.readouterr().err
    assert f"emoji.json: entry {index}: 'name' is null and there is no 'short_name'" in err


def test_a_missing_image_is_dropped_or_refused_with_strict(tmp_path, capsys):
    make_packages(tmp_path / "pkg")
    (tmp_path / "pkg" / TWITTER / twemoji.IMAGE_DIR / "1f600.png").unlink()
    assert prepare(tmp_path, *SIZES, "--strict") == 2
    assert "1f600.png: missing image (emoji 1F600" in capsys.readouterr().err
    assert prepare(tmp_path, *SIZES) == 0
    summary = json.loads((tmp_path / "prep/summary.json").read_text())
    assert summary["dropped"] == [{"id": "1F600", "reason": "missing image"}]
    assert summary["items"] == N_ITEMS - 1
    first = data.load_prepared(tmp_path / "prep").items[0]
    assert first["id"] == 1 and first["caption"].startswith("white smiling face")


FLAG_CASES = {
    "with_raw": (["--iapr-root", "x"], "--twemoji and --iapr-root do not go together"),
    "with_mat": (["--mat", "x"], "--twemoji and --mat do not go together"),
    "with_lists": (["--images", "x"], "--twemoji and --images do not go together"),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_twemoji_with_other_input_flags_is_refused(tmp_path, capsys, case):
    extra, match = FLAG_CASES[case]
    assert prepare(tmp_path, *SIZES, *extra) == 2
    assert match in capsys.readouterr().err


def test_twemoji_and_emojilib_need_each_other(tmp_path, capsys):
    twitter, emojilib = make_packages(tmp_path / "pkg")
    out = str(tmp_path / "prep")
    assert data.main(["prepare", "--twemoji", str(twitter), "--out", out]) == 2
    assert "--twemoji needs --emojilib DIR" in capsys.readouterr().err
    assert data.main(["prepare", "--emojilib", str(emojilib), "--out", out]) == 2
    assert "--emojilib goes with --twemoji DIR" in capsys.readouterr().err
