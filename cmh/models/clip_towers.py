"""Both hashing towers' backbones from one ``transformers.CLIPModel`` (--backbone clip).

- load_clip: a hub name or local folder (CLIPModel + its fast tokenizer), or "tiny": a small
  randomly initialised CLIP whose WordPiece vocabulary is built from the training captions.
- clip_from_config: the architecture (random weights) and tokenizer rebuilt from the JSON strings
  a checkpoint holds (clip_config_json, tokenizer_to_json), no network and no folder.
- ClipImageBackbone / ClipTextBackbone: the projected image embedding and the projected
  end-of-text embedding (what CLIPModel.get_image_features / get_text_features return), each
  holding its own half of the CLIPModel (the two share no parameters; logit_scale is unused).

Pooling: CLIP's text model takes the hidden state at the first ``eos_token_id`` of each sequence,
except when ``eos_token_id == 2`` (configs older than transformers PR #24773), where it takes the
position of the largest token id. The tiny CLIP's end-of-text token is [SEP] (id 3, see
cmh.models.text_encoders.SPECIAL_TOKENS), so it pools at [SEP], never by the legacy rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from cmh.data.image_transforms import NORMS
from cmh.models.heads import ImageHasher, TextHasher
from cmh.models.model_sources import offline_kwargs
from cmh.models.text_encoders import SPECIAL_TOKENS, train_wordpiece
from cmh.models.tower_registry import Tower, register_tower
from cmh.utils.errors import UserError

CLIP_MEAN, CLIP_STD = NORMS["clip"]  # CLIP's image processor statistics (--image-norm clip)
CLIP_IMAGE_SIZE = 224
CLIP_MAX_LENGTH = 32  # the CLIP hashing toolboxes' caption length
TINY_CLIP = "tiny"

TINY_VOCAB_SIZE = 2000
TINY_PATCH = 8
TINY_PROJECTION = 32
TINY_TOWER = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
}
LEGACY_EOS_ID = 2  # CLIPTextModel pools at argmax(input_ids) when eos_token_id is this
TOKEN_KEYS = ("pad_token", "unk_token", "bos_token", "eos_token", "cls_token", "sep_token",
              "mask_token")  # fmt: skip
CLIP_HINT = (
    "Offline, pass --clip-model FOLDER (a local folder holding a transformers CLIPModel: "
    "config.json, the weights and the tokenizer files) or --clip-model tiny (a small randomly "
    "initialised CLIP)"
)


def load_clip(name: str, captions: list[str] | None, image_size: int, max_length: int):
    """(CLIPModel, fast tokenizer) for --clip-model ``name``: "tiny" (random weights, a WordPiece
    vocabulary trained on ``captions``, ``image_size``-pixel images, at least ``max_length``
    positions), a hub name or a local folder (whose own image size must equal ``image_size``)."""
    if name == TINY_CLIP:
        return _tiny_clip(captions, image_size, max_length)
    model, tokenizer = _pretrained_clip(name)
    expected = model.config.vision_config.image_size
    if image_size != expected:
        raise UserError(
            f"--image-size {image_size}: the CLIP model {name} takes {expected}-pixel images; "
            f"pass --image-size {expected}"
        )
    return model, tokenizer


def _tiny_tokenizer(captions: list[str] | None):
    """The tiny CLIP's fast tokenizer: cmh.models.text_encoders' deterministic lower-casing WordPiece
    ([CLS] x [SEP]) trained on ``captions``."""
    from transformers import PreTrainedTokenizerFast

    if not captions:
        raise UserError(
            "--clip-model tiny builds its vocabulary from the training captions, but none were "
            "given; pass a data set with captions or --clip-model FOLDER (a pretrained CLIP)"
        )
    backend = train_wordpiece(list(captions), TINY_VOCAB_SIZE)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)


def _tiny_clip(captions: list[str] | None, image_size: int, max_length: int):
    """(CLIPModel, tokenizer): a small randomly initialised CLIP (torch's global seed governs
    the weights) pooling its text at the [SEP] token."""
    from transformers import CLIPConfig, CLIPModel

    if image_size < TINY_PATCH or image_size % TINY_PATCH:
        raise UserError(
            f"--image-size {image_size}: --clip-model tiny cuts images into {TINY_PATCH}-pixel "
            f"patches; pass an --image-size that is a multiple of {TINY_PATCH} (e.g. 32 or 224)"
        )
    tokenizer = _tiny_tokenizer(captions)
    eos = tokenizer.sep_token_id
    if eos == LEGACY_EOS_ID:  # the vocabulary's order (SPECIAL_TOKENS) rules this out
        raise RuntimeError("the tiny CLIP's [SEP] id is 2: CLIP would pool at argmax(input_ids)")
    text = dict(
        TINY_TOWER,
        vocab_size=len(tokenizer),
        max_position_embeddings=max(max_length, CLIP_MAX_LENGTH),
        projection_dim=TINY_PROJECTION,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=eos,
    )
    vision = dict(TINY_TOWER, image_size=image_size, patch_size=TINY_PATCH,
                  projection_dim=TINY_PROJECTION)  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=TINY_PROJECTION)
    return CLIPModel(config), tokenizer


def _pretrained_clip(name: str):
    """(CLIPModel in float32, fast tokenizer) from a hub name or local folder; UserError naming
    --clip-model when it cannot be had (no hub reachable: the Hugging Face cache only, at once)."""
    from transformers import AutoTokenizer, CLIPModel

    local = Path(name).is_dir()
    offline = offline_kwargs(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, use_fast=True, **offline)
        # transformers 5 loads in the checkpoint's dtype by default; the towers train in float32
        model = CLIPModel.from_pretrained(name, dtype=torch.float32, **offline)
    except Exception as e:  # offline hub lookups raise OSError and friends
        where = f"the folder {name}" if local else f"'{name}' from the Hugging Face hub"
        raise UserError(
            f"could not load the CLIP model from {where} ({type(e).__name__}: {e}). {CLIP_HINT}"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"--clip-model {name}: a fast tokenizer (tokenizer.json) is required")
    return model, tokenizer


def clip_config_json(model) -> str:
    """The CLIPModel's full config (every key, not a diff from this version's defaults)."""
    return model.config.to_json_string(use_diff=False)


def tokenizer_to_json(tokenizer) -> str:
    """JSON of {"tokenizer": the backend tokenizer, "special_tokens": {"pad_token": ..., ...}}:
    the pipeline and the special-token names (e.g. <|startoftext|>, [SEP]) that rebuild it."""
    specials = {
        key: value
        for key, value in tokenizer.special_tokens_map.items()
        if key in TOKEN_KEYS and isinstance(value, str)
    }
    return json.dumps(
        {"tokenizer": tokenizer.backend_tokenizer.to_str(), "special_tokens": specials}
    )


def _tokenizer_from_json(tokenizer_json: str):
    """A fast tokenizer from tokenizer_to_json's string (or a bare backend tokenizer's JSON,
    whose special tokens are then the tiny vocabulary's that it holds)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    stored = json.loads(tokenizer_json)
    if "special_tokens" in stored and "tokenizer" in stored:
        backend, specials = Tokenizer.from_str(stored["tokenizer"]), stored["special_tokens"]
    else:
        backend = Tokenizer.from_str(tokenizer_json)
        specials = {k: v for k, v in SPECIAL_TOKENS.items() if backend.token_to_id(v) is not None}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)


def clip_from_config(config_json: str, tokenizer_json: str):
    """(CLIPModel with random weights, fast tokenizer) rebuilt from clip_config_json's and
    tokenizer_to_json's strings (a checkpoint's); load the state dict next."""
    from transformers import CLIPConfig, CLIPModel

    try:
        config = CLIPConfig.from_dict(json.loads(config_json))
        tokenizer = _tokenizer_from_json(tokenizer_json)
    except Exception as e:  # a damaged or foreign checkpoint: JSON, config or tokenizer errors
        raise UserError(
            f"the checkpoint's CLIP config or tokenizer cannot be read ({type(e).__name__}: "
            f"{e}); pass a checkpoint written by a --backbone clip run"
        ) from e
    return CLIPModel(config), tokenizer


class ClipImageBackbone(nn.Module):
    """CLIP's vision tower and projection. [B, 3, S, S] normalised images (CLIP_MEAN/CLIP_STD)
    -> [B, projection_dim]: the projected post-layer-norm class embedding."""

    def __init__(self, vision_model: nn.Module, visual_projection: nn.Linear):
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = visual_projection
        self.out_features = visual_projection.out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=images, return_dict=True).pooler_output
        return self.visual_projection(pooled)


class ClipTextBackbone(nn.Module):
    """CLIP's text tower and projection. [B, L] token ids and attention mask -> [B,
    projection_dim]: the projected final-layer-norm hidden state at the end-of-text token."""

    def __init__(self, text_model: nn.Module, text_projection: nn.Linear):
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.out_features = text_projection.out_features
        self.max_positions = text_model.config.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return self.text_projection(out.pooler_output)


def clip_backbones(model) -> tuple[ClipImageBackbone, ClipTextBackbone]:
    """The CLIPModel's two towers as (image, text) backbones; they share no parameters and
    leave out ``logit_scale``."""
    return (
        ClipImageBackbone(model.vision_model, model.visual_projection),
        ClipTextBackbone(model.text_model, model.text_projection),
    )


def clip_parts(cfg, captions, pretrained: bool, shared: dict):
    """(vision, words, tokenizer) of one CLIPModel, loaded once per model (``shared``): a fresh
    one from cfg.clip_model, or the architecture stored in cfg (a checkpoint's)."""
    if "clip" in shared:
        return shared["clip"]
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
    shared["clip"] = vision, words, tokenizer
    return shared["clip"]


def build_clip_image(cfg, captions, pretrained, shared) -> ImageHasher:
    vision, _, _ = clip_parts(cfg, captions, pretrained, shared)
    return ImageHasher(cfg.bits, vision, cfg.freeze_image_backbone, vision.out_features,
                       cfg.head_dropout, cfg.image_batchnorm == "frozen")  # fmt: skip


def build_clip_text(cfg, captions, pretrained, shared):
    _, words, tokenizer = clip_parts(cfg, captions, pretrained, shared)
    return TextHasher(cfg.bits, words, "clip", cfg.freeze_text_encoder, cfg.head_dropout), tokenizer


CLIP_IMAGE = register_tower(Tower("image", "clip", "CLIP's vision tower (--backbone clip, "
                                  "--clip-model)", build=build_clip_image, whole=True))  # fmt: skip
CLIP_TEXT = register_tower(Tower("text", "clip", "CLIP's text tower (--backbone clip, --clip-model)",
                                 build=build_clip_text))  # fmt: skip
