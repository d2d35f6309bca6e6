"""Towers by name: each backbone module registers the towers it builds.

An image tower is named by ``--image-model``: a bare name is a torchvision builder
(``resnet18``), ``KIND:NAME`` a model of the registered tower KIND (``timm:efficientnet_lite0``),
and a tower registered as a whole model (``clip``, from ``--backbone clip``) by its own name.
A text tower is named by ``--text-encoder`` (``bert``, ``bow``, ``clip``). ``--help`` lists
every registered name; an unknown one is refused with the closest.

    register_tower(Tower("image", "mine", "my backbones", build=build_mine))
    python train.py --image-model mine:small ...

``build(cfg, captions, pretrained, shared)`` returns the tower's module (an image tower: an
``ImageHasher``; a text tower: ``(TextHasher | BowHasher, tokenizer | None)``); ``shared`` is
one dict per model, so two towers cut from one pretrained model (CLIP) load it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cmh.utils.errors import UserError, did_you_mean

MODALITIES = ("image", "text")
DEFAULT_IMAGE_TOWER = "torchvision"  # a bare --image-model name is a torchvision builder


@dataclass(frozen=True)
class Tower:
    """modality: "image" or "text". name: what selects it. summary: one line for --help.
    build(cfg, captions, pretrained, shared): the tower (see the module docstring).
    check(model_name): UserError naming the closest valid names for a name it cannot build.
    whole: the name alone selects it (``clip``), rather than ``name:MODEL``."""

    modality: str
    name: str
    summary: str
    build: Callable[..., Any]
    check: Callable[[str], None] | None = None
    whole: bool = False


_TOWERS: dict[str, dict[str, Tower]] = {m: {} for m in MODALITIES}


def register_tower(tower: Tower) -> Tower:
    if tower.modality not in MODALITIES:
        raise ValueError(f"tower {tower.name!r}: modality must be one of {MODALITIES}")
    if tower.name in _TOWERS[tower.modality]:
        raise ValueError(f"an {tower.modality} tower named {tower.name!r} is registered already")
    _TOWERS[tower.modality][tower.name] = tower
    return tower


def unregister_tower(modality: str, name: str) -> None:
    _TOWERS[modality].pop(name, None)


def tower_names(modality: str) -> list[str]:
    return sorted(_TOWERS[modality])


def registered_towers(modality: str) -> list[Tower]:
    return [_TOWERS[modality][n] for n in tower_names(modality)]


def get_tower(modality: str, name: str, flag: str) -> Tower:
    """The ``modality`` tower registered as ``name``; UserError naming ``flag`` and the closest
    registered names otherwise."""
    if name not in _TOWERS[modality]:
        known = tower_names(modality)
        raise UserError(
            f"{flag} {name!r}: no {modality} tower of that name is registered"
            f"{did_you_mean(name, known)}; "
            f"registered: {', '.join(known)}"
        )
    return _TOWERS[modality][name]


def image_tower(image_model: str) -> tuple[Tower, str]:
    """(tower, the model name within it) of an ``--image-model`` value."""
    whole = _TOWERS["image"].get(image_model)
    if whole is not None and whole.whole:
        return whole, image_model
    kind, sep, name = image_model.partition(":")
    if sep:
        return get_tower("image", kind, "--image-model KIND:NAME:"), image_model
    return get_tower("image", DEFAULT_IMAGE_TOWER, "--image-model"), image_model
