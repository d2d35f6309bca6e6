"""Damaged input data: each kind is handled (converted, truncated with a count) or reported with the
item id and the file, through the prepare step and through the Dataset (policy: docs/errors.md)."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import annotation_bytes, item_ids, make_raw_layout, make_tokenizer, write
from PIL import Image

import data
import train
from cmh.utils.errors import UserError

SPLIT = ["--n-query", "4", "--n-train", "30", "--n-val", "4"]
IDS = item_ids(40)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def noise(mode: str, size: tuple[int, int] = (48, 40), seed: int = 0) -> Image.Image:
    """A random image of `mode` (random, so that a JPEG of it has entropy-coded data to cut)."""
    rng = np.random.default_rng(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    shape = (size[1], size[0], bands) if bands > 1 else (size[1], size[0])
    values = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return Image.fromarray(values).convert(mode)


def truncated_jpeg() -> bytes:
    """A JPEG cut in the middle of its scan data: PIL's verify() passes it, decoding fails."""
    whole = encoded(noise("RGB"), "JPEG")
    return whole[: len(whole) // 2]


def gray16_png() -> bytes:
    ramp = (np.arange(48 * 40, dtype=np.uint32).reshape(40, 48) * 34).astype(np.uint16)
    return encoded(Image.fromarray(ramp), "PNG")


# name -> (bytes written as NN/ID.jpg, kept by prepare with the image check on)
IMAGES = {
    "truncated jpeg": (truncated_jpeg, False),
    "zero-byte jpeg": (lambda: b"", False),
    "png renamed .jpg": (lambda: encoded(noise("RGBA"), "PNG"), True),
    "grayscale jpeg": (lambda: encoded(noise("L"), "JPEG"), True),
    "cmyk jpeg": (lambda: encoded(noise("CMYK"), "JPEG"), True),
    "16-bit grayscale png renamed .jpg": (gray16_png, True),
}


def image_path(raw: Path, item_id: int) -> Path:
    return raw / "iaprtc12/images" / f"{item_id // 1000:02d}" / f"{item_id}.jpg"


def eng_path(raw: Path, item_id: int) -> Path:
    return raw / "iaprtc12/annotations_complete_eng" / f"{item_id // 1000:02d}" / f"{item_id}.eng"


def prepare(raw: Path, out: Path, *extra: str) -> int:
    return data.main(["prepare", "--iapr-root", str(raw / "iaprtc12"), "--saiapr-root",
                      str(raw / "saiapr_tc-12"), "--out", str(out), *SPLIT, *extra])  # fmt: skip


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    make_raw_layout(tmp_path / "raw")
    return tmp_path / "raw"


def as_query(prepared: data.PreparedData, item_id: int) -> data.HashingDataset:
    """A Dataset holding just `item_id` (as the query split), images at 16 px."""
    prepared.splits["query"] = [item_id]
    return data.HashingDataset(prepared, "query", image_size=16)


@pytest.mark.parametrize("kind", IMAGES)
def test_damaged_image_through_prepare_and_dataset(raw, tmp_path, capsys, kind):
    make, kept = IMAGES[kind]
    item, path = IDS[5], image_path(raw, IDS[5])
    write(path, make())
    assert prepare(raw, tmp_path / "checked") == 0
    summary = json.loads((tmp_path / "checked/summary.json").read_text())
    if kept:  # converted to RGB when loaded
        assert summary["dropped"] == []
        sample = as_query(data.load_prepared(tmp_path / "checked"), item)[0]
        assert sample["image"].shape == (3, 16, 16) and torch.isfinite(sample["image"]).all()
        assert sample["image"].std() > 0.1  # not a blank (e.g. clipped-to-white) picture
        return
    assert summary["dropped"] == [{"id": item, "reason": "unreadable image"}]
    # --strict: the first bad item is an error naming the item and its image file
    assert prepare(raw, tmp_path / "strict", "--strict") == 2
    err = capsys.readouterr().err
    assert f"item {item}: unreadable image" in err and str(path) in err
    # without the image check it is kept, and loading it names the item and the file
    assert prepare(raw, tmp_path / "unchecked", "--no-check-images") == 0
    dataset = as_query(data.load_prepared(tmp_path / "unchecked"), item)
    with pytest.raises(UserError, match=f"item {item}: cannot read image") as info:
        dataset[0]
    assert str(path) in str(info.value) and "--check-images" in str(info.value)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    path = write(tmp_path / "g.jpg", gray16_png())
    image = np.asarray(data.load_image(path, 7))
    expected = np.round(np.asarray(Image.open(path), dtype=np.float64) / 257).astype(np.uint8)
    assert (image[..., 0] == expected).all() and (image[..., 0] == image[..., 2]).all()
    assert image.max() > 200 and image.min() == 0


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8", "utf-8-sig"])
def test_annotation_encodings(raw, tmp_path, encoding):
    caption = "a café in São Paulo – the niño’s “red” kite; 20 €"
    body = annotation_bytes(IDS[3], caption, encoding="utf-8").decode("utf-8")
    write(eng_path(raw, IDS[3]), body.encode(encoding))
    assert prepare(raw, tmp_path / "p") == 0
    prepared = data.load_prepared(tmp_path / "p")
    assert prepared.captions([IDS[3]]) == [caption]


def test_long_caption_is_truncated_and_counted(raw, tmp_path, caplog):
    words = " ".join(["red house near the blue tree"] * 600)  # 3,600 words
    write(eng_path(raw, IDS[2]), annotation_bytes(IDS[2], words))
    assert prepare(raw, tmp_path / "p") == 0
    prepared = data.load_prepared(tmp_path / "p")
    assert prepared.captions([IDS[2]]) == [words]  # prepare keeps the caption whole
    tokenizer = make_tokenizer([x["caption"] for x in prepared.items])
    prepared.splits["query"] = [item["id"] for item in prepared.items]
    with caplog.at_level(logging.INFO, logger="data"):
        dataset = data.HashingDataset(prepared, "query", tokenizer, max_length=12, images=False)
    captions = prepared.captions(dataset.ids)
    full = [len(x) for x in tokenizer(captions)["input_ids"]]
    plain = tokenizer(captions, truncation=True, max_length=12)["input_ids"]
    assert dataset.input_ids == plain  # same ids as plain truncation
    assert dataset.n_truncated == sum(n > 12 for n in full) >= 1
    assert len(dataset[dataset.ids.index(IDS[2])]["input_ids"]) == 12
    assert f"{dataset.n_truncated} of {len(captions)} captions truncated" in caplog.text
    short = data.HashingDataset(prepared, "query", tokenizer, max_length=max(full), images=False)
    assert short.n_truncated == 0


@pytest.fixture
def broken_copy(tiny_prepared, tmp_path) -> tuple[Path, int, Path]:
    """A copy of the tiny demo dataset whose first training image is a truncated JPEG."""
    root = tmp_path / "demo"
    shutil.copytree(tiny_prepared.parent, root)
    prepared = data.load_prepared(root / "prepared")
    item = prepared.splits["train"][0]
    path = prepared.image_path(prepared.items[prepared.rows([item])[0]])
    path.write_bytes(truncated_jpeg())
    return root / "prepared", item, path


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_bad_image_stops_training_naming_item(broken_copy, tmp_path, tiny_flags, capsys, workers):
    prepared, item, path = broken_copy
    argv = ["--data", str(prepared), "--out", str(tmp_path / "run"), *tiny_flags, "--epochs", "1",
            "--num-workers", workers]  # fmt: skip
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert f"item {item}: cannot read image {path}" in err, err[-2000:]


def tiny_local_bert(folder: Path, captions: list[str], positions: int) -> Path:
    """A local Hugging Face model folder (BERT, `positions` position embeddings) and tokenizer."""
    from transformers import BertConfig, BertModel

    import models

    tokenizer = models.tokenizer_from_json(models.train_wordpiece(captions, 300).to_str())
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=positions)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_max_length_beyond_text_model_positions_refused(
    tiny_prepared, tmp_path, tiny_flags, capsys
):
    prepared = data.load_prepared(tiny_prepared)
    folder = tiny_local_bert(tmp_path / "bert16", prepared.captions(prepared.splits["train"]), 16)
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "run"), *tiny_flags,
            "--text-model", str(folder), "--max-length", "24", "--epochs", "1"]  # fmt: skip
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert "--max-length 24" in err and "16" in err
    assert not (tmp_path / "run" / "last.pt").exists()
