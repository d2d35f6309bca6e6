"""A checkpoint made ready to encode: checkpoint -> data -> model -> label check, then the codes
of its splits (from the frozen-feature cache when the run trained on one).

The one path evaluate.py and retrieve.py share; train.py's final evaluation uses the same
:func:`encode_splits` on the model it already holds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from cmh.data.caches.frozen_features import encode_from_cache, reusable_cache
from cmh.data.dataset import HashingDataset, make_loader
from cmh.data.prepared_folder import PreparedData, check_prepared_folder, load_prepared
from cmh.evaluation.encoding import encode, pad_id
from cmh.models.hashers import load_model
from cmh.runs.checkpoints import check_checkpoint_file, load_checkpoint
from cmh.utils.devices import resolve_device
from cmh.utils.errors import UserError, check_all


@dataclass
class Loaded:
    """A checkpoint rebuilt on a device, with the prepared data it is evaluated on."""

    path: Path
    state: dict
    model: Any
    tokenizer: Any
    cfg: Any
    data: PreparedData
    device: torch.device


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or ``path/best.pt`` when ``path`` is a run folder (and it says so);
    UserError for a folder without best.pt."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / "best.pt").is_file():
        print(f"{path} is a run folder: evaluating {path / 'best.pt'}", file=sys.stderr)
        return path / "best.pt"
    raise UserError(f"--checkpoint {path} is a directory without best.pt; give RUN/best.pt")


def check_labels_match(model_labels: list[str], data, path) -> None:
    """Refuse a data folder whose label columns differ from those the model was trained on."""
    theirs = list(data.label_names)
    if not model_labels or list(model_labels) == theirs:
        return
    if len(model_labels) != len(theirs):
        detail = f"{len(model_labels)} labels in the checkpoint, {len(theirs)} in the data"
    else:
        i = next(i for i, (a, b) in enumerate(zip(model_labels, theirs, strict=True)) if a != b)
        detail = f"column {i}: '{model_labels[i]}' in the checkpoint, '{theirs[i]}' in the data"
    raise UserError(f"the labels of {path} do not match the checkpoint's ({detail})")


def load_for_evaluation(checkpoint: str | Path, data_dir: str | Path | None, device: str) -> Loaded:
    """The checkpoint's model on ``device`` and ``data_dir`` (default: the data it trained on),
    its label columns checked against the model's."""
    path = Path(checkpoint)
    check_all(lambda: check_checkpoint_file(path),  # cheap checks first, every problem at once
              lambda: data_dir is None or check_prepared_folder(data_dir))  # fmt: skip
    state = load_checkpoint(path)
    data_dir = data_dir or state.get("args", {}).get("data")
    if not data_dir:
        raise UserError("the checkpoint does not say which data it was trained on; pass --data DIR")
    data = load_prepared(data_dir)
    dev = resolve_device(device)
    model, tokenizer, cfg = load_model(state, dev, source=path)
    check_labels_match(cfg.label_names, data, data_dir)
    return Loaded(path, state, model, tokenizer, cfg, data, dev)


def encode_splits(
    loaded: Loaded, splits, batch_size: int = 128, num_workers: int = 0, amp: bool = False,
    ids: list[int] | None = None, say=lambda message: print(message, file=sys.stderr),
) -> dict:  # fmt: skip
    """{split: encode(...)} of ``splits`` (or of the items ``ids`` of a single split). A model
    trained with --freeze-backbones is encoded from the run's frozen-feature cache when a file
    with the training key exists (the same codes, without running the backbones); it says so
    through ``say`` (stderr by default)."""
    model, cfg, data, device = loaded.model, loaded.cfg, loaded.data, loaded.device
    amp = amp and device.type == "cuda"
    cache = reusable_cache(model, data.root, loaded.state.get("args", {}), amp) if ids is None else None
    if cache is not None:
        say(f"frozen backbones: encoding from the feature cache {cache} (as training did)")
        return encode_from_cache(model, cache, data, list(splits), batch_size, device, amp)
    encoded = {}
    for split in splits:
        ds = HashingDataset(
            data,
            split,
            tokenizer=loaded.tokenizer,
            max_length=cfg.max_length,
            image_size=cfg.image_size,
            train=False,
            bow=cfg.text_encoder == "bow",
            images=model.image is not None,
            norm=cfg.image_norm,
        )
        subset = ds if ids is None else Subset(ds, [ds.ids.index(i) for i in ids])
        loader = make_loader(subset, batch_size, shuffle=False, seed=0, num_workers=num_workers,
                             pad_id=pad_id(loaded.tokenizer))  # fmt: skip
        encoded[split] = encode(model, loader, device, amp, desc=f"encode {split}")
    return encoded
