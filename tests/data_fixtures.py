"""Builders of tiny raw IAPR/SAIAPR layouts, list files and a tokenizer, for the data tests.

Plain functions (not pytest fixtures) so that any test file can import them without
clashing with a shared conftest.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ("red", "blue", "green", "house", "tree", "woman", "man", "street", "sky", "cloud")
LABEL_NAMES = {3: "sky-blue", 7: "tree", 11: "man", 19: "woman", 23: "house", 40: "car"}
UNUSED_LABELS = {90: "unused-concept"}


def jpeg_bytes(size: int = 8, mode: str = "RGB", value: int = 120) -> bytes:
    """A tiny valid JPEG (mode RGB, L or CMYK)."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    image = Image.new(mode, (size, size), (value,) * bands if bands > 1 else value)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def annotation_bytes(item_id: int, description: str | None, encoding: str = "cp1252") -> bytes:
    """An IAPR .eng file; ``description`` None leaves out the DESCRIPTION element."""
    folder = f"{item_id // 1000:02d}"
    body = "" if description is None else f"<DESCRIPTION>{description}</DESCRIPTION>\n"
    text = (
        f"<DOC>\n<DOCNO>annotations/{folder}/{item_id}.eng</DOCNO>\n<TITLE>Title & co</TITLE>\n"
        f"{body}<NOTES></NOTES>\n<LOCATION>Quito, Ecuador</LOCATION>\n<DATE>May 2003</DATE>\n"
        f"<IMAGE>images/{folder}/{item_id}.jpg</IMAGE>\n</DOC>"
    )
    return text.encode(encoding)


def item_ids(n: int) -> list[int]:
    """``n`` non-contiguous ids spread over several NN folders (NN = id // 1000)."""
    return [25 + 373 * k for k in range(n)]


def make_raw_layout(root: Path, n_items: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/iaprtc12`` and ``root/saiapr_tc-12`` with ``n_items`` complete items.

    Every item gets a caption, 1-3 labels from :data:`LABEL_NAMES` and an 8x8 JPEG.
    Returns (iapr_root, saiapr_root).
    """
    rng = np.random.default_rng(seed)
    iapr, saiapr = root / "iaprtc12", root / "saiapr_tc-12"
    picture = jpeg_bytes()
    label_ids = sorted(LABEL_NAMES)
    lines: dict[str, list[str]] = {}
    for item_id in item_ids(n_items):
        folder = f"{item_id // 1000:02d}"
        words = " ".join(rng.choice(WORDS, size=6))
        write(iapr / "annotations_complete_eng" / folder / f"{item_id}.eng",
              annotation_bytes(item_id, f"a {words}; the  sky\n in the background;"))  # fmt: skip
        write(iapr / "images" / folder / f"{item_id}.jpg", picture)
        labels = rng.choice(label_ids, size=int(rng.integers(1, 4)))
        for segment, label in enumerate(labels, start=1):
            lines.setdefault(folder, []).append(f"{item_id} {segment} {label}")
    for folder, rows in lines.items():
        write(saiapr / folder / "labels.txt", ("\n".join(rows) + "\n").encode())
    wlist = {**LABEL_NAMES, **UNUSED_LABELS}
    write(saiapr / "wlist.txt", "".join(f"{k}\t{v}\n" for k, v in wlist.items()).encode())
    return iapr, saiapr


def write(path: Path, data: bytes) -> Path:
    """Write bytes, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def list_line(image: str, bow: list[int], bits: list[int]) -> str:
    """One line of the lists format."""
    return " ".join([image, *map(str, bow), *map(str, bits)])


def make_tokenizer(captions: list[str]):
    """A tiny WordLevel PreTrainedTokenizerFast trained on ``captions`` (no network)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"])
    tokenizer.train_from_iterator(captions, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]")
