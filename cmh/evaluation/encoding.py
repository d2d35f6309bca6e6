"""Encoding a split into ±1 codes with a model, and the retrieval metrics of encoded splits.

Shared by evaluate.py (a checkpoint), train.py (validation and the final evaluation) and
retrieve.py. Codes are the sign of the towers' outputs with 0 -> +1 (:func:`binarize`); the
ranking metrics themselves are the pure functions of :mod:`cmh.evaluation.hamming_metrics`.
"""

from __future__ import annotations

import torch

from cmh.evaluation.hamming_metrics import chance_level, mean_average_precision
from cmh.utils import progress
from cmh.utils.torch_ops import binarize  # noqa: F401  (encoding.binarize: the codes)

DIRECTIONS = {
    "i2t": ("image", "text"),
    "t2i": ("text", "image"),
    "i2i": ("image", "image"),
    "t2t": ("text", "text"),
}


@torch.no_grad()
def encode(
    model, loader, device: torch.device, amp: bool = False, desc: str = "encode", prepare_batch=None
) -> dict:
    """Run the towers over a loader. Returns {"image": ±1 int8 [N, bits], "text": ..., "labels":
    float32 [N, C], "ids": int64 [N]} (numpy; a modality is absent when the model lacks its tower).
    ``prepare_batch`` (optional) maps each batch after its copy to ``device`` (train.py's
    --image-cache: uint8 images -> normalised "image")."""
    model.eval()
    parts: dict[str, list] = {}
    for batch in progress.long_step(loader, desc):
        batch = {
            k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()
        }
        if prepare_batch is not None:
            batch = prepare_batch(batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            codes = model(batch)
        for name, h in codes.items():
            parts.setdefault(name, []).append(binarize(h.float()).to(torch.int8).cpu())
        parts.setdefault("labels", []).append(batch["labels"].float().cpu())
        parts.setdefault("ids", []).append(batch["index"].cpu())
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def retrieval_metrics(queries: dict, database: dict, directions=("i2t", "t2i")) -> dict:
    """mAP (ties by index and tie-averaged) and chance level per direction, on encoded splits.
    The chance level depends on the labels alone, so every direction reports the same value."""
    out, chance = {}, None
    for d in directions:
        q_mod, db_mod = DIRECTIONS[d]
        if q_mod not in queries or db_mod not in database:
            continue
        args = (queries[q_mod], database[db_mod], queries["labels"], database["labels"])
        out[f"map_{d}"] = mean_average_precision(*args, ties="index")
        out[f"map_{d}_tie_avg"] = mean_average_precision(*args, ties="average")
        if chance is None:
            chance = chance_level(queries["labels"], database["labels"])
        out[f"chance_{d}"] = chance
    return out


def default_directions(model, intra: bool = False) -> tuple[str, ...]:
    """I2T and T2I (plus I2I, T2T on request); T2T alone for a text-only model."""
    if model.image is None or model.text is None:
        return ("t2t",) if model.image is None else ("i2i",)
    return tuple(DIRECTIONS) if intra else ("i2t", "t2i")


def pad_id(tokenizer) -> int:
    return 0 if tokenizer is None or tokenizer.pad_token_id is None else tokenizer.pad_token_id


def format_table(results: dict) -> str:
    """A small text table: direction, mAP (ties by index), mAP (tie-averaged), chance."""
    rows = ["direction   mAP(index)  mAP(tie-avg)  chance"]
    for d in DIRECTIONS:
        if f"map_{d}" in results:
            rows.append(
                f"{d.upper():<10}  {results[f'map_{d}']:.4f}      "
                f"{results[f'map_{d}_tie_avg']:.4f}        {results[f'chance_{d}']:.4f}"
            )
    return "\n".join(rows)
