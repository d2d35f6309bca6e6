"""The check that a tiny run really learned: both towers' codes diverse, both directions above
chance. A fixture whose model has collapsed (one code for every caption, say) makes every
comparison of numbers between two code paths compare constants; these checks stop that."""

from __future__ import annotations

import json
from pathlib import Path

import torch

MIN_DISTINCT = 0.25  # at least a quarter of the items have codes of their own, in each modality
MIN_ABOVE_CHANCE = 0.10  # mAP >= chance + 0.1 in both directions


def distinct_fraction(codes) -> float:
    """Fraction of rows of a ±1 code matrix [N, bits] that are distinct."""
    return len({row.tobytes() for row in codes}) / len(codes)


def encode_run(run: Path, splits=("query", "database")) -> dict:
    """cmh.evaluation.encoding.encode of ``splits`` with the run's best.pt (the codes evaluate.py ranks)."""
    import data
    from cmh.evaluation.encoding import encode, pad_id
    from cmh.models.hashers import load_model
    from cmh.runs.checkpoints import load_checkpoint

    model, tokenizer, cfg = load_model(load_checkpoint(run / "best.pt"), torch.device("cpu"))
    prepared = data.load_prepared(json.loads((run / "args.json").read_text())["data"])
    out = {}
    for split in splits:
        ds = data.HashingDataset(prepared, split, tokenizer, cfg.max_length, cfg.image_size,
                                 images=model.image is not None, bow=cfg.text_encoder == "bow",
                                 framing=cfg.image_framing, norm=cfg.image_norm)  # fmt: skip
        loader = data.make_loader(ds, 64, shuffle=False, seed=0, pad_id=pad_id(tokenizer))
        out[split] = encode(model, loader, torch.device("cpu"))
    return out


def code_diversity(run: Path) -> dict[str, float]:
    """Fraction of distinct codes of the query and database items, per modality the run has."""
    encoded = encode_run(run)
    return {
        m: distinct_fraction(
            torch.cat([torch.from_numpy(encoded[s][m]) for s in ("query", "database")]).numpy()
        )
        for m in ("image", "text")
        if m in encoded["query"]
    }


def assert_diverse(
    run: Path, modalities=("image", "text"), least: float = MIN_DISTINCT
) -> dict[str, float]:
    """Raise AssertionError unless each of ``modalities`` gives a fraction ``least`` of the items
    codes of their own: a comparison of two code paths on this run then compares rankings of
    different codes, not constants (a collapsed or constant tower gives one code to all 120)."""
    distinct = code_diversity(run)
    assert all(distinct.get(m, 0) >= least for m in modalities), distinct
    return distinct


def assert_learned(run: Path, least: float = MIN_DISTINCT) -> dict:
    """Raise AssertionError unless the run's codes are diverse (a fraction ``least`` of the items
    with codes of their own) and its mAP clearly above chance in every direction it reports;
    returns {"results": results.json, "distinct": fractions}."""
    results = json.loads((run / "results.json").read_text())
    distinct = code_diversity(run)
    assert distinct and all(f >= least for f in distinct.values()), distinct
    directions = [k[4:] for k in results if k.startswith("map_") and not k.endswith("tie_avg")]
    assert directions, results
    for d in directions:
        assert results[f"map_{d}"] >= results[f"chance_{d}"] + MIN_ABOVE_CHANCE, (d, results)
    return {"results": results, "distinct": distinct}
