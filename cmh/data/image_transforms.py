"""Images: decoding any file PIL reads to RGB, and the training / evaluation transforms.

The framing (``--image-framing``, :mod:`cmh.config.recipes`): ``squash-crop`` trains on a random S x S
crop of Resize((Sc, Sc)), Sc = int(S * 1.143), and ``squash`` on Resize((S, S)); both flip with
p 1/2 in training and evaluate on Resize((S, S)), so training and evaluation see the same aspect
distortion. Normalised with the ``--image-norm`` mean/std (ImageNet's or CIFAR-10's). The uint8
cache (:mod:`cmh.data.caches.uint8_cache`) does the same on tensors on the device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cmh.utils.errors import UserError

FRAMINGS = ("squash-crop", "squash")
NORMS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def norm_stats(norm: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of an ``--image-norm``: a name of NORMS, or "r,g,b/r,g,b" (a model's own
    statistics, as timm's pretrained configs give them); UserError naming the value otherwise."""
    if norm in NORMS:
        return NORMS[norm]
    try:
        mean, std = (tuple(float(v) for v in part.split(",")) for part in norm.split("/"))
    except ValueError:
        mean = std = ()
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise UserError(
            f"--image-norm {norm!r}: expected one of {', '.join(NORMS)} or MEAN/STD as "
            "'r,g,b/r,g,b' with positive std"
        )
    return mean, std


def norm_name(mean, std) -> str:
    """The ``--image-norm`` value of (mean, std): a NORMS name when it is one, else "r,g,b/r,g,b"."""
    for name, stats in NORMS.items():
        if tuple(mean) == stats[0] and tuple(std) == stats[1]:
            return name
    return ",".join(f"{v:g}" for v in mean) + "/" + ",".join(f"{v:g}" for v in std)


IMAGENET_MEAN, IMAGENET_STD = NORMS["imagenet"]
RESIZE_FACTOR = 1.143  # squash-crop training: resize to int(S * 1.143) square, random S x S crop


class ImageTransform:
    """PIL RGB -> FloatTensor [3, S, S], normalised; ``transform(image, generator)``.

    train, ``squash-crop``: Resize((Sc, Sc)), Sc = int(S * 1.143) -> a random S x S crop (offsets
    uniform over every valid position) -> horizontal flip with probability 1/2; ``squash``:
    Resize((S, S)) -> the flip. Drawn from ``generator`` (a ``torch.Generator``; None: torch's
    global generator), so a training item's augmentation is a function of the generator's seed
    alone. eval (either framing): Resize((S, S)), no randomness.
    """

    def __init__(
        self, image_size: int, train: bool, framing: str = "squash-crop", norm: str = "imagenet"
    ) -> None:
        from torchvision.transforms import Normalize  # here: importing torchvision costs seconds

        if framing not in FRAMINGS:
            raise UserError(f"unknown --image-framing {framing!r}")
        self.size, self.train, self.framing = image_size, train, framing
        crop = train and framing == "squash-crop"
        self.resize_size = int(image_size * RESIZE_FACTOR) if crop else image_size
        self.normalize = Normalize(*norm_stats(norm))

    def __call__(
        self, image: Image.Image, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        from torchvision.transforms import functional as F

        s = self.size
        if not self.train:
            return self.normalize(F.to_tensor(F.resize(image, [s, s])))
        image = F.resize(image, [self.resize_size, self.resize_size])
        if self.resize_size > s:  # squash-crop
            top = int(torch.randint(0, self.resize_size - s + 1, (1,), generator=generator))
            left = int(torch.randint(0, self.resize_size - s + 1, (1,), generator=generator))
            image = F.crop(image, top, left, s, s)
        if torch.rand(1, generator=generator) < 0.5:
            image = F.hflip(image)
        return self.normalize(F.to_tensor(image))


def image_transform(
    image_size: int, train: bool, framing: str = "squash-crop", norm: str = "imagenet"
) -> ImageTransform:
    """The training (crop and flip) or evaluation transform; see :class:`ImageTransform`."""
    return ImageTransform(image_size, train, framing, norm)


def item_generator(seed: int, epoch: int, item_id: int, stream: int = 0) -> torch.Generator:
    """A torch generator seeded by (seed, epoch, item id) alone: a training item's augmentation
    is the same in any worker process, on any resume, for any number of workers. ``stream`` > 0
    gives an independent generator of the same item (1: which caption a step trains on)."""
    entropy = [seed % 2**32, epoch, item_id] + ([stream] if stream else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any mode: grayscale, CMYK and palette by PIL; 16-bit grayscale scaled by 1/257
    first (PIL's own conversion clips it to 255, turning most of the image white); an image with
    transparency (an alpha channel, a transparent palette entry) laid over white by its alpha,
    as a page shows it (PIL's own conversion keeps whatever colour hides under transparent
    pixels, often black). The one conversion of every image read: files, uploads, Twemoji."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        values = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255)
        image = Image.fromarray(np.round(values).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def image_decodes(path: Path) -> bool:
    """Whether PIL can decode the whole file. A JPEG is decoded at 1/8 scale (``draft``), which
    still reads every byte of its entropy-coded data, so a truncated file is caught (``verify``
    alone passes one): about 1 ms per IAPR-sized image instead of 2."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Exception:  # PIL raises many types for broken files; any of them means unreadable
        return False
    return True


def load_image(path: Path, item_id: int, moved_hint: str = "") -> Image.Image:
    """Open an image as RGB (see :func:`to_rgb`); UserError naming the item and file if the file
    is missing (with ``moved_hint``: PreparedData.moved_hint) or cannot be decoded (empty,
    truncated, not an image)."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except FileNotFoundError:
        raise UserError(f"item {item_id}: image {path} does not exist{moved_hint}") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, DecompressionBombError...
        raise UserError(
            f"item {item_id}: cannot read image {path} ({type(exc).__name__}: {exc}); replace "
            "the file, or prepare the data again with --check-images (the default) to drop it"
        ) from None
