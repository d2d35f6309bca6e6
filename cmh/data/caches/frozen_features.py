"""Frozen-feature mode: backbone features extracted once, cached on disk, hash heads trained on them.

With frozen backbones the expensive part of every step (ResNet-18, the transformer) gives the same
output for an item every epoch, so it is computed once per item (evaluation transform, no
augmentation) and training touches only the hash layers: sweeps over bits, margin and loss variants
take seconds, and CPU-only runs at the real scale become possible.

The cache file is keyed by the dataset (its manifest), the model (the backbones' weights, image
size and normalisation, tokenizer, maximum length, pooling) and the extraction precision (bf16 autocast or float32):
any change gives a new key, never a stale feature.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from cmh.evaluation.encoding import encode
from cmh.utils import progress
from cmh.utils.atomic_io import atomic_path
from cmh.utils.folder_lock import file_lock

log = logging.getLogger("train")


def _tensor_digest(h, module: torch.nn.Module) -> None:
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def extraction_precision(amp: bool) -> str:
    """The extraction precision `extract` runs at: "bf16" (autocast) with amp, else "fp32"."""
    return "bf16" if amp else "fp32"


def cache_key(model, data_root: Path, precision: str) -> str:
    """sha256 (first 16 hex digits) of the manifest and of everything the frozen features depend on,
    the extraction precision ("bf16" or "fp32", see `extraction_precision`) included."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'bf16' or 'fp32', got {precision!r}")
    h = hashlib.sha256((Path(data_root) / "manifest.jsonl").read_bytes())
    cfg = model.config
    settings = {
        "precision": precision,
        "image_size": cfg.image_size,
        "max_length": cfg.max_length,
        "pooling": cfg.pooling,
        "tokenizer": cfg.tokenizer_json,
    }
    if model.image is not None:  # the input statistics change every image feature
        settings["image_norm"] = cfg.image_norm
    h.update(json.dumps(settings, sort_keys=True).encode())
    if model.image is not None:
        _tensor_digest(h, model.image.backbone)
    if model.text is not None:
        _tensor_digest(h, model.text.encoder)
    return h.hexdigest()[:16]


@torch.no_grad()
def extract(model, loader, device: torch.device, amp: bool = False) -> dict[str, torch.Tensor]:
    """Backbone features of every item in `loader`: {"ids": [N], "image": [N, 512],
    "text": [N, hidden]} (float32, CPU; a modality is absent when the model lacks its tower)."""
    model.eval()
    parts: dict[str, list] = {}
    for batch in progress.long_step(loader, "extract features"):
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            if model.image is not None:
                parts.setdefault("image", []).append(model.image.backbone(batch["image"]).float())
            if model.text is not None:
                f = model.text.features(batch["input_ids"], batch["attention_mask"])
                parts.setdefault("text", []).append(f.float())
        parts.setdefault("ids", []).append(batch["index"])
    return {k: torch.cat(v).cpu() for k, v in parts.items()}


def cache_file(model, data_root: Path, cache_dir: Path, amp: bool) -> Path:
    """The cache file for (data, model, extraction precision) in ``cache_dir``."""
    precision = extraction_precision(amp)
    return Path(cache_dir) / f"features-{cache_key(model, data_root, precision)}.pt"


def reusable_cache(model, data_root: Path, saved_args: dict, amp: bool) -> Path | None:
    """For evaluate.py and retrieve.py: the cached features a frozen-backbone model (trained with
    --freeze-backbones) can be encoded from, found by the key training uses in the run's
    --feature-cache (``saved_args``: the checkpoint's arguments) or DATA/features; None for a
    model whose backbones trained, or when no matching file exists."""
    saved = saved_args.get("feature_cache")
    cache_dirs = [Path(d) for d in (saved, Path(data_root) / "features") if d]
    cfg = model.config
    frozen = cfg.freeze_text_encoder or model.text is None
    frozen = frozen and (cfg.freeze_image_backbone or model.image is None)
    if not frozen or cfg.text_encoder == "bow":
        return None
    name = None  # the key hashes the backbones: computed once, only when a folder exists
    for cache_dir in map(Path, cache_dirs):
        if cache_dir.is_dir():
            name = name or cache_file(model, data_root, cache_dir, amp).name
            if (cache_dir / name).is_file():
                return cache_dir / name
    return None


def encode_from_cache(model, path: Path, data, splits, batch_size: int, device, amp: bool) -> dict:
    """{split: encode(...)} of the hash heads over the cached backbone features in ``path``:
    the codes a full forward pass gives, without running the backbones."""
    features = torch.load(path, map_location="cpu", weights_only=True)
    return {
        split: encode(
            model,
            feature_loader(FeatureDataset(features, data, split), batch_size),
            device,
            amp,
            desc=f"encode {split}",
        )
        for split in splits
    }


def load_or_extract(
    model, data, make_loader_for_all, cache_dir: Path, device, *, amp: bool
) -> dict:
    """The cached features for (data, model, precision), extracted and saved atomically on first use.

    make_loader_for_all: a function () -> DataLoader over every item of the dataset (eval transform).
    amp: extract under bf16 autocast (what the run itself uses); part of the cache key.
    """
    path = cache_file(model, data.root, cache_dir, amp)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # shared on purpose: runs started together extract once; the others wait, then read it
        with file_lock(path.with_name(f".{path.name}.lock")):
            if not path.is_file():
                log.info("frozen features: extracting once into %s", path)
                features = extract(model, make_loader_for_all(), device, amp)
                with atomic_path(path) as tmp:
                    torch.save(features, tmp)
                return features
    log.info("frozen features: using the cache %s", path)
    return torch.load(path, map_location="cpu", weights_only=True)


class FeatureDataset(Dataset):
    """One split over cached features. Batches come whole from `__getitems__` (no per-item
    Python work): {"image_features": [B, 512], "text_features": [B, H], "labels": [B, C],
    "index": [B]}."""

    def __init__(self, features: dict, data, split: str):
        row_of = {int(i): r for r, i in enumerate(features["ids"].tolist())}
        ids = list(data.splits[split])
        rows = torch.tensor([row_of[i] for i in ids], dtype=torch.long)
        self.tensors = {
            f"{k}_features": features[k][rows] for k in ("image", "text") if k in features
        }
        self.tensors["labels"] = torch.from_numpy(data.label_matrix(ids))
        self.tensors["index"] = torch.tensor(ids, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.tensors["index"])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.long)
        return {k: v[rows] for k, v in self.tensors.items()}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def _whole_batch(batch):
    return batch


def feature_loader(
    dataset: FeatureDataset, batch_size: int, sampler=None, drop_last: bool = False
) -> DataLoader:
    """A loader over cached features, in order, or in the order of `sampler` (training)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        collate_fn=_whole_batch,
    )
