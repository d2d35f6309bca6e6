"""scripts/caption_lengths.py: token counts and the captions each --max-length would cut,
checked against what training's own tokenization (cmh.data.dataset.tokenize_captions) cuts."""

from __future__ import annotations

import numpy as np

import models
from cmh.data.dataset import tokenize_captions
from cmh.data.prepared_folder import load_prepared
from scripts import caption_lengths


def saved_tokenizer(captions, folder):
    """A small WordPiece tokenizer of ``captions``, saved as a text model's folder would hold it."""
    tokenizer = models.tokenizer_from_json(models.train_wordpiece(captions, 200).to_str())
    tokenizer.save_pretrained(folder)
    return tokenizer


def test_lengths_and_cut_counts_match_training_tokenization(tiny_prepared, tmp_path, capsys):
    data = load_prepared(tiny_prepared)
    captions = [item["caption"] for item in data.items]
    tokenizer = saved_tokenizer(captions, tmp_path / "tok")
    lengths = caption_lengths.token_lengths(tokenizer, captions)
    assert len(lengths) == len(captions) and lengths.min() >= 3  # [CLS] word [SEP]
    assert lengths.tolist() == [len(tokenizer(c)["input_ids"]) for c in captions]
    median = int(np.median(lengths))
    limits = [median - 1, median, int(lengths.max())]
    argv = ["--data", str(tiny_prepared), "--text-model", str(tmp_path / "tok")]
    assert caption_lengths.main([*argv, "--lengths", *map(str, limits)]) == 0
    out = capsys.readouterr().out
    assert f"{len(captions)} captions; tokens: max {lengths.max()}," in out
    for limit in limits:
        cut = tokenize_captions(tokenizer, captions, limit)[1]
        assert f"{limit:>10}  {cut:>12}" in out, (limit, cut, out)
    assert f"{int(lengths.max()):>10}  {0:>12}" in out  # the longest caption fits its own length
    assert tokenize_captions(tokenizer, captions, median - 1)[1] > 0  # the table is not all zeros


def test_one_split_and_bad_input(tiny_prepared, tmp_path, capsys):
    data = load_prepared(tiny_prepared)
    saved_tokenizer([item["caption"] for item in data.items], tmp_path / "tok")
    argv = ["--data", str(tiny_prepared), "--text-model", str(tmp_path / "tok")]
    assert caption_lengths.main([*argv, "--split", "query"]) == 0
    assert f"{len(data.splits['query'])} captions;" in capsys.readouterr().out
    assert caption_lengths.main(["--data", str(tmp_path / "nowhere"), *argv[2:]]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert caption_lengths.main([*argv[:2], "--text-model", str(tmp_path / "empty-dir")]) == 2
    assert "--text-model" in capsys.readouterr().err
