"""A trained model as a hash function: images and texts in, packed binary codes out.

    from cmh.retrieval import Hasher
    hasher = Hasher.load("runs/demo/best.pt", device="cpu")
    image_codes = hasher.encode_images(["photo.jpg", pil_image, uint8_array])  # uint8 [3, bits/8]
    text_codes = hasher.encode_texts(["two people on a beach"])               # uint8 [1, bits/8]

The checkpoint's own preprocessing: an image is decoded to RGB (16-bit grayscale scaled, alpha
laid over white: :func:`cmh.data.image_transforms.to_rgb`), resized to the model's square size and
normalised with its statistics (the evaluation transform); a text is tokenized with the model's
tokenizer, cut at its --max-length and padded to the longest of its batch (a bag-of-words model
counts the words of the vocabulary of the data it trained on). The codes are the sign of the
towers' outputs (0 -> +1) packed 8 bits a byte, bit set for +1 (:func:`pack_codes`): exactly the
codes evaluate.py scores for the same items (tests/retrieval/test_collection.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cmh.data.bag_of_words import bow_vector
from cmh.data.dataset import pad_tokens
from cmh.data.image_transforms import image_transform, to_rgb
from cmh.data.prepared_folder import load_prepared
from cmh.evaluation.encoding import pad_id
from cmh.models.hashers import load_model
from cmh.retrieval.binary_index import fingerprint, pack_codes
from cmh.runs.checkpoints import check_checkpoint_file, load_checkpoint
from cmh.utils.devices import resolve_device
from cmh.utils.errors import UserError
from cmh.utils.torch_ops import binarize


def read_image(image: Any, name: str | None = None) -> Image.Image:
    """An RGB PIL image from a file path, a PIL image or a uint8 array [H, W] / [H, W, 3|4];
    UserError naming ``name`` (default: the path, or "image") when it cannot be read."""
    name = name or (str(image) if isinstance(image, str | Path) else "image")
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.ndim == 3 and image.shape[2] not in (3, 4):
            raise UserError(f"{name}: an array image must be uint8 [H, W] or [H, W, 3 or 4], "
                            f"got {image.dtype} {list(image.shape)}")  # fmt: skip
        return to_rgb(Image.fromarray(image))
    try:
        with Image.open(image) as im:
            return to_rgb(im)
    except FileNotFoundError:
        raise UserError(f"{name}: no such image file") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, DecompressionBombError...
        raise UserError(f"{name}: cannot read the image ({type(e).__name__}: {e})") from None


@dataclass
class Hasher:
    """A checkpoint's model on a device, ready to encode; build it with :meth:`load`."""

    checkpoint: Path
    state: dict
    model: Any
    tokenizer: Any
    cfg: Any
    device: torch.device
    vocab: dict | None = None  # word -> column, for a bag-of-words text tower
    data: str | None = None  # the prepared folder that vocabulary comes from

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "auto", data: str | Path | None = None):
        """Load a checkpoint (RUN/best.pt) once. ``data``: the prepared folder whose vocabulary a
        bag-of-words text tower counts (default: the one the run trained on)."""
        path = Path(checkpoint)
        check_checkpoint_file(path)
        state, device = load_checkpoint(path), resolve_device(device)
        model, tokenizer, cfg = load_model(state, device, source=path)
        model.eval()
        vocab = None
        if cfg.text_encoder == "bow" and model.text is not None:
            data = data or state.get("args", {}).get("data")
            if not data:
                raise UserError(f"{path}: a bag-of-words model; pass the prepared folder it "
                                "trained on (data=..., --data DIR) for its vocabulary")  # fmt: skip
            vocab = {w: i for i, w in enumerate(load_prepared(data).vocab)}
        return cls(path, state, model, tokenizer, cfg, device, vocab, vocab and str(data))

    @property
    def bits(self) -> int:
        return self.cfg.bits

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in ("image", "text") if getattr(self.model, m) is not None)

    def no_codes(self) -> np.ndarray:
        """The packed codes of no item: uint8 [0, ceil(bits/8)]."""
        return np.zeros((0, (self.bits + 7) // 8), np.uint8)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the model config and tensors (:func:`binary_index.fingerprint`)."""
        return fingerprint(self.state)

    @functools.cached_property
    def _transform(self):
        return image_transform(self.cfg.image_size, False, norm=self.cfg.image_norm)

    def preprocess_image(self, image: Any, name: str | None = None) -> torch.Tensor:
        """The model's input [3, S, S] for one image (see :func:`read_image`)."""
        return self._transform(read_image(image, name))

    def _need(self, tower: str) -> None:
        if getattr(self.model, tower) is None:
            raise UserError(f"{self.checkpoint} has no {tower} tower; use the other modality")

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Packed codes uint8 [N, ceil(bits/8)] of preprocessed images [N, 3, S, S]."""
        self._need("image")
        h = self.model.encode_image({"image": pixels.to(self.device)})
        return pack_codes(binarize(h.float()).cpu().numpy())

    def encode_images(self, images, batch_size: int = 64) -> np.ndarray:
        """Packed codes uint8 [N, ceil(bits/8)] of images: file paths, PIL images or uint8
        arrays, in batches of ``batch_size``; UserError naming the first one unreadable."""
        self._need("image")
        images, out = list(images), []
        for start in range(0, len(images), batch_size):
            part = images[start : start + batch_size]
            out.append(self.encode_pixels(torch.stack([self.preprocess_image(im) for im in part])))
        return np.concatenate(out) if out else self.no_codes()

    @torch.no_grad()
    def encode_texts(self, texts, batch_size: int = 128) -> np.ndarray:
        """Packed codes uint8 [N, ceil(bits/8)] of strings, in batches of ``batch_size``."""
        self._need("text")
        texts, out = list(texts), []
        if any(not isinstance(t, str) for t in texts):
            raise UserError("encode_texts takes strings")
        for start in range(0, len(texts), batch_size):
            h = self.model.encode_text(self._text_batch(texts[start : start + batch_size]))
            out.append(pack_codes(binarize(h.float()).cpu().numpy()))
        return np.concatenate(out) if out else self.no_codes()

    def _text_batch(self, texts: list[str]) -> dict:
        if self.vocab is not None:
            bow = torch.zeros(len(texts), len(self.vocab))
            for r, text in enumerate(texts):
                cols, counts = bow_vector(text, self.vocab)
                bow[r, cols] = torch.tensor(counts, dtype=torch.float)
            return {"bow": bow.to(self.device)}
        tokens = self.tokenizer(texts, truncation=True, max_length=self.cfg.max_length)["input_ids"]
        ids, mask = pad_tokens(tokens, pad_id(self.tokenizer))
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
