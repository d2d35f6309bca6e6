"""Bag-of-words text: the tokenizer, the vocabulary and sparse count vectors.

Pure Python; used by the prepare step (the vocabulary of the training captions) and by the
bag-of-words text tower.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

DEFAULT_VOCAB_SIZE = 2912  # the width of the IAPR lists' bag of words

# A fixed English stop-word list (function words only; colour, count and place words stay).
_STOP_WORDS_TEXT = """
about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how if in into is it
its itself just may me might more most must my myself no nor not of off on once only or
other our ours ourselves out over own same shall she should so some such than that the
their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your
yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_WORD = re.compile(r"[a-z]+")


def tokenize_words(caption: str) -> list[str]:
    """Bag-of-words tokens: case-folded, accents stripped, ``[a-z]+`` runs of 2+ letters,
    stop words (:data:`STOP_WORDS`) removed. Order and repeats are kept."""
    folded = unicodedata.normalize("NFKD", caption.casefold())
    ascii_text = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w for w in _WORD.findall(ascii_text) if len(w) > 1 and w not in STOP_WORDS]


def build_vocab(captions: Iterable[str], size: int = DEFAULT_VOCAB_SIZE) -> list[str]:
    """The ``size`` most frequent words over ``captions`` (total counts; ties alphabetical)."""
    counts = Counter(w for caption in captions for w in tokenize_words(caption))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [word for word, _ in ranked[:size]]


def bow_vector(caption: str, vocab_index: dict[str, int]) -> tuple[list[int], list[int]]:
    """Sparse bag of words of one caption: (ascending vocabulary indices, counts > 0).

    Words outside ``vocab_index`` (word -> column) are ignored.
    """
    counts = Counter(vocab_index[w] for w in tokenize_words(caption) if w in vocab_index)
    indices = sorted(counts)
    return indices, [counts[i] for i in indices]
