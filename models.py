"""The two hashing towers and the container that holds them.

- ImageHasher: an image backbone by its ecosystem name (torchvision builder, timm:NAME; ResNet-18
  by default; cmh/image_backbones.py) or CLIP's vision tower, its classifier replaced by
  Linear(width, bits) and tanh.
- TextHasher: a `transformers` encoder, the [CLS] feature (or a masked mean; CLIP: its projected
  end-of-text embedding, cmh/clip_towers.py), Linear(hidden, bits), tanh.
- BowHasher: an MLP on bag-of-words counts (the DCMH-style text tower), the classic baseline.
- CrossModalHasher: one module holding both towers (one state_dict, one optimizer).

`ModelConfig` is saved inside every checkpoint. Once a model has been created it also holds the text
encoder's architecture and the tokenizer (as JSON strings), so a checkpoint alone rebuilds the model
with no network and no model folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from cmh.clip_towers import (
    clip_backbones,
    clip_config_json,
    clip_from_config,
    load_clip,
    tokenizer_to_json,
)
from cmh.encoding import binarize  # noqa: F401  (models.binarize: codes are its ±1 signs)
from cmh.errors import UserError
from cmh.image_backbones import build_backbone, check_image_model, weights_url
from cmh.model_sources import check_towers
from cmh.recipes import FRAMINGS, norm_stats
from cmh.text_encoders import (  # noqa: F401  (models.train_wordpiece etc.: the text tower's parts)
    SPECIAL_TOKENS,
    _dropout_overrides,
    _load_pretrained_text,
    tokenizer_from_json,
    train_wordpiece,
)

TINY_TEXT_MODEL = "tiny"  # a small randomly initialised BERT with a WordPiece vocabulary built here
TINY_BERT = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild the model; stored (as a dict of plain types) in checkpoints."""

    bits: int = 32
    image_encoder: str = "resnet18"  # a torchvision builder name | timm:NAME | clip | none
    image_weights: str = (
        "imagenet"  # imagenet | none | path to a state-dict file (fresh models only)
    )
    image_size: int = 224
    image_framing: str = "squash-crop"  # cmh.recipes.FRAMINGS: the training crop (eval: squashed)
    image_norm: str = "imagenet"  # cmh.recipes.NORMS: the mean/std every input path applies
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


class HashHead(nn.Module):
    """(Dropout p, when p > 0), (input norm), Linear(in, bits) with Xavier initialisation, then
    tanh: outputs in (-1, 1).

    The input norm (``ModelConfig.head_norm`` "batchnorm": BatchNorm1d without affine
    parameters, set by :func:`build_model`) centres and scales each feature by its batch
    statistics in training and by their running averages in evaluation, where it is an affine
    map folded into the linear layer: the same function class, better conditioned. It matters
    for DCMH's balance term, sum_k (sum_i f_ik)^2 over all n training items: with raw
    non-negative backbone features (ReLU then pooling) its curvature along the input mean is
    about (b / n) |mean|^2, so that term dominates and the codes collapse (docs/dcmh.md)."""

    def __init__(self, in_features: int, bits: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm: nn.Module = nn.Identity()
        self.linear = nn.Linear(in_features, bits)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    tanh = True  # False: linear outputs (DCMH's objective; ModelConfig.head_activation "none")

    def use_input_norm(self) -> None:
        """Centre and scale the inputs: BatchNorm1d without affine parameters (head_norm)."""
        self.norm = nn.BatchNorm1d(self.linear.in_features, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, bits] in (-1, 1)
        out = self.linear(self.norm(self.dropout(x)))
        return torch.tanh(out) if self.tanh else out


class ImageHasher(nn.Module):
    """Backbone (classifier removed: [B, 3, S, S] normalised -> [B, width]) -> HashHead.
    Output [B, bits]."""

    def __init__(
        self,
        bits: int,
        backbone: nn.Module,
        freeze_backbone: bool = False,
        width: int = 512,
        dropout: float = 0.0,
        frozen_batchnorm: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = HashHead(width, bits, dropout)
        self.freeze_backbone = freeze_backbone
        self.frozen_batchnorm = frozen_batchnorm
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageHasher:
        """Train mode, except a frozen backbone (all of it) and, with ``frozen_batchnorm``
        (--image-batchnorm frozen), the backbone's BatchNorm layers: they normalise with their
        pretrained running statistics and do not update them (their scale and shift still
        train). Fine-tuning at batch 32 on images unlike the pretraining set otherwise replaces
        those statistics within an epoch, and with them every feature a trained head reads."""
        super().train(mode)
        if self.freeze_backbone:  # keep batch-norm statistics fixed too
            self.backbone.eval()
        elif self.frozen_batchnorm:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class TextHasher(nn.Module):
    """Transformer encoder -> [CLS] (or masked-mean) feature -> HashHead. Output [B, bits]."""

    def __init__(
        self,
        bits: int,
        encoder: nn.Module,
        pooling: str = "cls",
        freeze: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling  # cls | mean | clip (the encoder itself pools: CLIP's text tower)
        width = encoder.out_features if pooling == "clip" else encoder.config.hidden_size
        self.head = HashHead(width, bits, dropout)
        self.freeze_encoder = freeze
        if freeze:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> TextHasher:
        super().train(mode)
        if self.freeze_encoder:  # no dropout in a frozen encoder
            self.encoder.eval()
        return self

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids and mask -> [B, hidden] pooled feature."""
        if self.pooling == "clip":
            return self.encoder(input_ids, attention_mask)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask))


class BowHasher(nn.Module):
    """MLP on bag-of-words counts: log1p -> Linear(V, hidden) -> ReLU -> HashHead. Output [B, bits]."""

    def __init__(self, bits: int, bow_dim: int, hidden: int = 4096):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(bow_dim, hidden), nn.ReLU(inplace=True))
        self.head = HashHead(hidden, bits)

    def forward(self, bow: torch.Tensor) -> torch.Tensor:
        return self.head(self.mlp(torch.log1p(bow)))


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


# ----------------------------------------------------------------------------- text tower


def _text_tower(cfg: ModelConfig, captions: list[str] | None, pretrained: bool):
    """(TextHasher or BowHasher or None, tokenizer or None); fills cfg.text_config/tokenizer_json."""
    from transformers import AutoConfig, AutoModel, BertConfig

    if cfg.text_encoder == "none":
        return None, None
    if cfg.text_encoder == "bow":
        if cfg.bow_dim < 1:
            raise UserError("the bag-of-words text encoder needs a vocabulary (bow_dim >= 1)")
        return BowHasher(cfg.bits, cfg.bow_dim, cfg.bow_hidden), None
    if cfg.text_config is not None:  # rebuild: architecture and tokenizer from the config alone
        tokenizer = tokenizer_from_json(cfg.tokenizer_json)
        d = json.loads(cfg.text_config)
        encoder = AutoModel.from_config(AutoConfig.for_model(d.pop("model_type"), **d))
    elif cfg.text_model == TINY_TEXT_MODEL:
        if not captions:
            raise UserError(
                "--text-model tiny builds its vocabulary from the training captions; none given"
            )
        tokenizer = tokenizer_from_json(train_wordpiece(captions, cfg.tiny_vocab_size).to_str())
        bert = BertConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=max(cfg.max_length, 64),
            **TINY_BERT,
            **_dropout_overrides(cfg.text_dropout),
        )
        encoder = AutoModel.from_config(bert)
    elif pretrained:
        encoder, tokenizer = _load_pretrained_text(cfg.text_model, cfg.text_dropout)
    else:
        raise UserError("the model config holds no text encoder architecture; cannot rebuild it")
    positions = getattr(encoder.config, "max_position_embeddings", None)
    if cfg.max_length == 0:  # never cut: the text model's own limit (the reference's setting)
        cfg.max_length = positions or 512
    if positions is not None and cfg.max_length > positions:
        raise UserError(
            f"--max-length {cfg.max_length} is more than the {positions} positions of the text "
            f"model {cfg.text_model}; use --max-length {positions} or less"
        )
    if getattr(encoder, "pooler", None) is not None:  # unused: we pool last_hidden_state ourselves
        encoder.pooler.requires_grad_(False)  # (and DDP insists every trained parameter is used)
    cfg.text_config = encoder.config.to_json_string()
    cfg.tokenizer_json = tokenizer.backend_tokenizer.to_str()
    return TextHasher(cfg.bits, encoder, cfg.pooling, cfg.freeze_text_encoder), tokenizer


def validate_config(cfg: ModelConfig) -> None:
    """Refuse impossible settings with the flag to change."""
    if cfg.bits < 1:
        raise UserError(f"--bits must be >= 1, got {cfg.bits}")
    choices = {
        "text_encoder": ("bert", "bow", "clip", "none"),
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
    if cfg.image_encoder not in ("none", "clip"):
        check_image_model(cfg.image_encoder)
    if cfg.image_encoder == "none" and cfg.text_encoder == "none":
        raise UserError("at least one tower is needed (image or text encoder)")
    if cfg.text_dropout is not None and not 0 <= cfg.text_dropout < 1:
        raise UserError(f"--text-dropout must be in [0, 1), got {cfg.text_dropout}")
    if not 0 <= cfg.head_dropout < 1:
        raise UserError(f"--head-dropout must be in [0, 1), got {cfg.head_dropout}")


def check_pretrained(cfg: ModelConfig) -> None:
    """Before any work: UserError naming every pretrained model of ``cfg`` that cannot be had
    offline or downloaded (cmh.model_sources), all in one message."""
    validate_config(cfg)  # an unknown --image-model first, with the closest names
    image = cfg.image_encoder not in ("none", "clip")
    weights = cfg.image_weights if image and cfg.image_weights != "none" else None
    url = weights_url(cfg.image_encoder) if image else None
    clip = cfg.clip_model if "clip" in (cfg.image_encoder, cfg.text_encoder) else None
    text = cfg.text_model if cfg.text_encoder == "bert" else None
    check_towers(weights, url, text, image_model=cfg.image_encoder, clip_model=clip)


def _image_tower(cfg: ModelConfig, pretrained: bool) -> ImageHasher:
    weights = cfg.image_weights if pretrained and cfg.image_weights != "none" else None
    backbone, width = build_backbone(cfg.image_encoder, weights, cfg.image_size)
    frozen_bn = cfg.image_batchnorm == "frozen"
    return ImageHasher(cfg.bits, backbone, cfg.freeze_image_backbone, width, cfg.head_dropout,
                       frozen_bn)  # fmt: skip


def _clip_towers(cfg: ModelConfig, captions: list[str] | None, pretrained: bool):
    """(ImageHasher | None, TextHasher | None, tokenizer) of one CLIPModel (cmh/clip_towers.py):
    a fresh one from cfg.clip_model, or the architecture stored in cfg (a checkpoint's)."""
    if cfg.clip_config is not None:
        clip, tokenizer = clip_from_config(cfg.clip_config, cfg.tokenizer_json)
    elif pretrained:
        clip, tokenizer = load_clip(cfg.clip_model, captions, cfg.image_size, cfg.max_length)
    else:
        raise UserError("the model config holds no CLIP architecture; cannot rebuild it")
    vision, words = clip_backbones(clip)
    if cfg.max_length == 0:  # never cut: the text model's own limit
        cfg.max_length = words.max_positions
    if cfg.max_length > words.max_positions:
        raise UserError(
            f"--max-length {cfg.max_length} is more than the {words.max_positions} positions of "
            f"the CLIP text model {cfg.clip_model}; use --max-length {words.max_positions} or less"
        )
    cfg.clip_config, cfg.tokenizer_json = clip_config_json(clip), tokenizer_to_json(tokenizer)
    image = text = None
    if cfg.image_encoder == "clip":
        image = ImageHasher(cfg.bits, vision, cfg.freeze_image_backbone, vision.out_features,
                            cfg.head_dropout, cfg.image_batchnorm == "frozen")  # fmt: skip
    if cfg.text_encoder == "clip":
        text = TextHasher(cfg.bits, words, "clip", cfg.freeze_text_encoder, cfg.head_dropout)
    return image, text, tokenizer


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
    if "clip" in (cfg.image_encoder, cfg.text_encoder):
        image, text, tokenizer = _clip_towers(cfg, captions, pretrained)
    if cfg.image_encoder not in ("none", "clip"):
        image = _image_tower(cfg, pretrained)
    if cfg.text_encoder not in ("none", "clip"):
        text, tokenizer = _text_tower(cfg, captions, pretrained)
    model = CrossModalHasher(cfg, image, text)
    for head in model.modules():
        if isinstance(head, HashHead):
            head.tanh = cfg.head_activation == "tanh"
            if cfg.head_norm == "batchnorm":
                head.use_input_norm()
    return model, tokenizer
