"""--resident-data: the training split held on the device, every batch gathered there.

    batches = ResidentBatches(cached_dataset, device, batch_size, seed, pad_id)
    batches.sampler.set_epoch(epoch)
    for batch in batches: ...        # "image" [B, 3, S, S] normalised, "input_ids", ... on device

What is held (built once per run): the training rows of the uint8 image cache
(cmh.data.caches.uint8_cache, side Sc = 1.143 S; IAPR's 10,000 training items at S = 224 are 2.0 GB), the
token ids of every training caption padded to --max-length with their attention masks, and the
labels. No worker, no host-to-device copy of pixels per step: a batch is an index gather, the
crop and flip one more gather (cmh.data.caches.uint8_cache.gpu_transform), all on the device.

The same batches as the --image-cache loader (tests/data/test_resident_batches.py): the order is the
loader's (a DistributedSampler of one process, shuffled by (seed, epoch)), crops and flips are
drawn from torch's default CPU generator in the loader path's order, and an item with several
captions trains on the one drawn from (seed, epoch, item) as cmh.data.dataset.HashingDataset draws it.
Token ids are padded to the batch's longest caption, as the loader pads them (the widths are
known on the host: no wait on the device). One difference: the last partial batch of an epoch is
always dropped (the loader keeps it when the split has fewer than two batches).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from cmh.data.caches.uint8_cache import CachedImageDataset, gpu_transform
from cmh.data.image_transforms import item_generator
from cmh.utils.errors import UserError


def resident_bytes(dataset: CachedImageDataset) -> int:
    """Device bytes of the split's uint8 images (the rest is small beside them)."""
    _, c, h, w = dataset.shape
    return len(dataset) * c * h * w


def fits_on(device: torch.device, nbytes: int, share: float = 0.5) -> tuple[bool, str]:
    """Whether ``nbytes`` fit in ``share`` of the device's free memory; and the numbers, said."""
    if device.type != "cuda":
        return True, f"{nbytes / 2**30:.2f} GiB in host memory ({device.type})"
    free, _ = torch.cuda.mem_get_info(device)
    said = f"{nbytes / 2**30:.2f} GiB of {free / 2**30:.1f} GiB free on {device}"
    return nbytes <= share * free, said


class ResidentBatches:
    """Full training batches of ``dataset`` (a training CachedImageDataset), gathered on
    ``device``; ``len()`` batches per epoch, order set by ``sampler.set_epoch``."""

    def __init__(
        self,
        dataset: CachedImageDataset,
        device: torch.device,
        batch_size: int,
        seed: int,
        pad_id: int,
        framing: str = "squash-crop",
        norm: str = "imagenet",
    ) -> None:
        if len(dataset) < batch_size:
            raise UserError(
                f"--resident-data keeps every batch at --batch-size {batch_size}, but the training "
                f"split has {len(dataset)} items; lower --batch-size"
            )
        self.dataset, self.device, self.batch_size, self.seed = dataset, device, batch_size, seed
        self.framing, self.norm = framing, norm
        self.sampler = DistributedSampler(
            range(len(dataset)), num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=True
        )
        images = np.memmap(dataset.array_path, dtype=np.uint8, mode="r", shape=dataset.shape)
        self.images = torch.from_numpy(np.ascontiguousarray(images[dataset.rows])).to(device)
        self.labels = dataset.labels.to(device)
        self.ids = torch.tensor(dataset.ids, dtype=torch.long)
        self.text = self._token_table(pad_id) if dataset.input_ids else None

    def _token_table(self, pad_id: int) -> dict:
        """Every caption's ids padded to the longest [T, L] and masks, on the device; their
        lengths and each item's caption rows on the host (a batch's width without a sync)."""
        ds = self.dataset
        captions, first, choices = [], [], {}
        for i, tokens in enumerate(ds.input_ids):
            options = ds.caption_choices.get(i) or [tokens]
            first.append(len(captions))
            choices[i] = list(range(len(captions), len(captions) + len(options)))
            captions += options
        width = longest_caption(ds)
        ids = torch.full((len(captions), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(captions), width), dtype=torch.long)
        for r, tokens in enumerate(captions):
            ids[r, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[r, : len(tokens)] = 1
        return {
            "input_ids": ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "lengths": torch.tensor([len(t) for t in captions], dtype=torch.long),
            "first": torch.tensor(first, dtype=torch.long),
            "choices": {i: c for i, c in choices.items() if len(c) > 1},
        }

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def _caption_rows(self, epoch: int) -> torch.Tensor:
        """Per item, the caption row it trains on this epoch (the first, or a drawn one)."""
        rows = self.text["first"].clone()
        for i, options in self.text["choices"].items():
            g = item_generator(self.seed, epoch, int(self.ids[i]), stream=1)
            rows[i] = options[int(torch.randint(len(options), (1,), generator=g))]
        return rows

    def __iter__(self):
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        on_device = order.to(self.device)
        captions = self._caption_rows(self.sampler.epoch) if self.text is not None else None
        for b in range(len(self)):
            take = slice(b * self.batch_size, (b + 1) * self.batch_size)
            rows = on_device[take]
            image = gpu_transform(
                self.images.index_select(0, rows),
                self.dataset.image_size,
                train=True,
                framing=self.framing,
                norm=self.norm,
            )
            batch = {
                "image": image,
                "labels": self.labels.index_select(0, rows),
                "index": self.ids[order[take]],
            }
            if captions is not None:  # as the loader pads: to the batch's longest caption
                chosen = captions[order[take]]
                width = int(self.text["lengths"][chosen].max())
                chosen = chosen.to(self.device, non_blocking=True)
                for key in ("input_ids", "attention_mask"):
                    batch[key] = self.text[key].index_select(0, chosen)[:, :width]
            yield batch


def longest_caption(dataset) -> int:
    """Tokens in the split's longest caption (every caption of an item with several): the static
    text length, which --max-length already bounds (no caption is cut further by it); 0 for a
    dataset without token ids (frozen features, bag of words)."""
    choices = getattr(dataset, "caption_choices", {})
    rows = [*(getattr(dataset, "input_ids", None) or []), *(r for c in choices.values() for r in c)]
    return max((len(r) for r in rows), default=0)


def resident_or_none(dataset: CachedImageDataset, device: torch.device, args, pad: int, log):
    """ResidentBatches of ``dataset`` when its images fit in half the device's free memory;
    None (the loader then) when not, said in the log."""
    ok, said = fits_on(device, resident_bytes(dataset))
    if not ok:
        log.info("--resident-data: the training images need %s: using the loader instead", said)
        return None
    log.info("--resident-data: the training split held on the device (%s)", said)
    return ResidentBatches(
        dataset,
        device,
        args.batch_size,
        args.seed,
        pad,
        framing=args.image_framing,
        norm=args.image_norm,
    )
