"""The two hashing towers and the container that holds them.

- ImageHasher: an image backbone by its ecosystem name (torchvision builder, timm:NAME; ResNet-18
  by default; cmh/models/image_backbones.py) or CLIP's vision tower, its classifier replaced by
  Linear(width, bits) and tanh.
- TextHasher: a `transformers` encoder, the [CLS] feature (or a masked mean; CLIP: its projected
  end-of-text embedding, cmh/models/clip_towers.py), Linear(hidden, bits), tanh.
- BowHasher: an MLP on bag-of-words counts (the DCMH-style text tower), the classic baseline.
- CrossModalHasher: one module holding both towers (one state_dict, one optimizer).

`ModelConfig` is saved inside every checkpoint. Once a model has been created it also holds the text
encoder's architecture and the tokenizer (as JSON strings), so a checkpoint alone rebuilds the model
with no network and no model folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from cmh.data.image_transforms import FRAMINGS, norm_stats
from cmh.models import clip_towers, image_backbones, text_encoders  # noqa: F401  (register towers)
from cmh.models.heads import BowHasher, HashHead, ImageHasher, TextHasher  # noqa: F401
from cmh.models.image_backbones import weights_url
from cmh.models.model_sources import check_towers
from cmh.models.text_encoders import TINY_BERT, TINY_TEXT_MODEL  # noqa: F401
from cmh.models.tower_registry import get_tower, image_tower, tower_names
from cmh.utils.errors import UserError
from cmh.utils.torch_ops import binarize  # noqa: F401  (models.binarize: codes are its ±1 signs)


@dataclass
class ModelConfig:
    """Everything needed to rebuild the model; stored (as a dict of plain types) in checkpoints."""

    bits: int = 32
    image_encoder: str = "resnet18"  # a torchvision builder name | timm:NAME | clip | none
    image_weights: str = (
        "imagenet"  # imagenet | none | path to a state-dict file (fresh models only)
    )
    image_size: int = 224
    image_framing: str = "squash-crop"  # cmh.config.recipes.FRAMINGS: the training crop (eval: squashed)
    image_norm: str = "imagenet"  # cmh.config.recipes.NORMS: the mean/std every input path applies
    freeze_image_backbone: bool = False
    image_batchnorm: str = "train"  # train | frozen (the backbone's BatchNorm statistics fixed)
    freeze_text_encoder: bool = False
    text_encoder: str = "bert"  # bert | bow | clip | none
    text_model: str = "bert-base-uncased"  # hub name, local folder, or "tiny"
    pooling: str = "cls"  # cls | mean
    head_activation: str = "tanh"  # tanh | none (linear outputs: the DCMH objective)
    max_length: int = 64  # 0 at creation: the text model's limit (then stored as that number)
    text_dropout: float | None = None  # dropout inside the text encoder; None: the model's own
    bow_dim: int = 0
    bow_hidden: int = 4096
    tiny_vocab_size: int = 2000
    label_names: list[str] = field(default_factory=list)
    head_dropout: float = 0.0  # dropout before each hash layer (0.2 in the CLIP toolboxes)
    head_norm: str = "none"  # none | batchnorm (centred, scaled head inputs: see HashHead)
    clip_model: str = ""  # --backbone clip: hub name, local folder or "tiny"
    clip_config: str | None = None  # filled by build_model: the CLIPModel config as JSON
    text_config: str | None = None  # filled by create_model: the encoder config as JSON
    tokenizer_json: str | None = None  # filled by create_model: the fast tokenizer as JSON

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(
                f"model config has unknown keys {sorted(unknown)}; was the checkpoint "
                "written by another version of this code?"
            )
        return cls(**d)


class CrossModalHasher(nn.Module):
    """Both towers in one module. `forward(batch)` returns {"image": [B, bits], "text": [B, bits]}
    for the towers present; each in (-1, 1)."""

    def __init__(self, config: ModelConfig, image: nn.Module | None, text: nn.Module | None):
        super().__init__()
        self.config = config
        self.image = image
        self.text = text

    def encode_image(self, batch: dict) -> torch.Tensor:
        if "image_features" in batch:  # frozen-feature mode: cached backbone output
            return self.image.head(batch["image_features"])
        return self.image(batch["image"])

    def encode_text(self, batch: dict) -> torch.Tensor:
        if "text_features" in batch:
            return self.text.head(batch["text_features"])
        if self.config.text_encoder == "bow":
            return self.text(batch["bow"])
        return self.text(batch["input_ids"], batch["attention_mask"])

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {}
        if self.image is not None:
            out["image"] = self.encode_image(batch)
        if self.text is not None:
            out["text"] = self.encode_text(batch)
        return out


def validate_config(cfg: ModelConfig) -> None:
    """Refuse impossible settings with the flag to change."""
    if cfg.bits < 1:
        raise UserError(f"--bits must be >= 1, got {cfg.bits}")
    choices = {
        "text_encoder": (*tower_names("text"), "none"),
        "pooling": ("cls", "mean"),
        "head_activation": ("tanh", "none"),
        "head_norm": ("none", "batchnorm"),
        "image_batchnorm": ("train", "frozen"),
        "image_framing": FRAMINGS,
    }
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} must be one of {allowed}, got {getattr(cfg, key)!r}")
    norm_stats(cfg.image_norm)
    if cfg.image_encoder != "none":
        tower, name = image_tower(cfg.image_encoder)
        if tower.check is not None:
            tower.check(name)
    if cfg.image_encoder == "none" and cfg.text_encoder == "none":
        raise UserError("at least one tower is needed (image or text encoder)")
    if cfg.text_dropout is not None and not 0 <= cfg.text_dropout < 1:
        raise UserError(f"--text-dropout must be in [0, 1), got {cfg.text_dropout}")
    if not 0 <= cfg.head_dropout < 1:
        raise UserError(f"--head-dropout must be in [0, 1), got {cfg.head_dropout}")


def check_pretrained(cfg: ModelConfig) -> None:
    """Before any work: UserError naming every pretrained model of ``cfg`` that cannot be had
    offline or downloaded (cmh.models.model_sources), all in one message."""
    validate_config(cfg)  # an unknown --image-model first, with the closest names
    image = cfg.image_encoder != "none" and image_tower(cfg.image_encoder)[0].name in (
        "torchvision", "timm")  # their weights are checked here; CLIP's with the clip model
    weights = cfg.image_weights if image and cfg.image_weights != "none" else None
    url = weights_url(cfg.image_encoder) if image else None
    clip = cfg.clip_model if "clip" in (cfg.image_encoder, cfg.text_encoder) else None
    text = cfg.text_model if cfg.text_encoder == "bert" else None
    check_towers(weights, url, text, image_model=cfg.image_encoder, clip_model=clip)


def build_model(cfg: ModelConfig, captions: list[str] | None = None, pretrained: bool = True):
    """(CrossModalHasher, tokenizer or None).

    pretrained=True (a fresh model for training): image weights as cfg.image_weights says, the text
    encoder from cfg.text_model (or a tiny BERT whose WordPiece vocabulary is trained on `captions`),
    or both from cfg.clip_model.
    pretrained=False (rebuilding from a checkpoint): architectures only; load the state dict next.
    """
    if pretrained:
        check_pretrained(cfg)  # validates cfg first
    else:
        validate_config(cfg)
    image = text = tokenizer = None
    shared: dict = {}  # one pretrained model cut into both towers (CLIP) is loaded once
    if cfg.image_encoder != "none":
        image = image_tower(cfg.image_encoder)[0].build(cfg, captions, pretrained, shared)
    if cfg.text_encoder != "none":
        tower = get_tower("text", cfg.text_encoder, "--text-encoder")
        text, tokenizer = tower.build(cfg, captions, pretrained, shared)
    model = CrossModalHasher(cfg, image, text)
    for head in model.modules():
        if isinstance(head, HashHead):
            head.tanh = cfg.head_activation == "tanh"
            if cfg.head_norm == "batchnorm":
                head.use_input_norm()
    return model, tokenizer


def load_model(state: dict, device: torch.device, source: str | Path = "the checkpoint"):
    """(model, tokenizer, config) rebuilt from a checkpoint dict alone; UserError naming `source`
    when its weights do not fit its own model config (e.g. an edited code length)."""
    cfg = ModelConfig.from_dict(state["model_config"])
    model, tokenizer = build_model(cfg, pretrained=False)
    try:  # strict: a key mismatch is an error, not a silent skip
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        detail = "; ".join(x.strip() for x in str(e).splitlines()[1:4] if x.strip())
        raise UserError(
            f"{source}: its weights do not fit its model config ({cfg.bits} bits, text model "
            f"{cfg.text_model}): {detail[:600]}"
        ) from e
    return model.to(device), tokenizer, cfg
