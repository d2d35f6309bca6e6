"""Images: decoding any file PIL reads to RGB, and the training / evaluation transforms.

Train: Resize(int(S * 1.143)) (shorter side, aspect kept) -> RandomCrop(S) -> horizontal flip;
eval: Resize((S, S)). Both ImageNet-normalised. The uint8 cache (:mod:`cmh.image_cache`) does
the same on tensors on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cmh.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transform(image_size: int, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB -> FloatTensor [3, S, S], ImageNet-normalised.

    train: Resize(int(S * 1.143)) -> RandomCrop(S) -> horizontal flip; eval: Resize((S, S)).
    """
    from torchvision import transforms  # here: importing torchvision costs seconds

    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return transforms.Compose(
            [
                transforms.Resize(int(image_size * 1.143)),
                transforms.RandomCrop(image_size),
                transforms.RandomHorizontalFlip(),
                *norm,
            ]
        )
    return transforms.Compose([transforms.Resize((image_size, image_size)), *norm])


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode: grayscale, CMYK, palette and alpha by PIL; 16-bit grayscale scaled by
    1/257 first (PIL's own conversion clips it to 255, turning most of the image white)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        values = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255)
        image = Image.fromarray(np.round(values).astype(np.uint8))
    return image.convert("RGB")


def load_image(path: Path, item_id: int) -> Image.Image:
    """Open an image as RGB (see :func:`_to_rgb`); UserError naming the item and file if the file
    cannot be decoded (empty, truncated, not an image)."""
    try:
        with Image.open(path) as image:
            return _to_rgb(image)
    except Exception as exc:  # PIL raises OSError, SyntaxError, DecompressionBombError...
        raise UserError(
            f"item {item_id}: cannot read image {path} ({type(exc).__name__}: {exc}); replace "
            "the file, or prepare the data again with --check-images (the default) to drop it"
        ) from None
