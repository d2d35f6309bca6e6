"""DCMH's alternating schedule (``--objective dcmh``), on the same data, backbones, selection,
evaluation and run folder as the triplet objective.

One epoch, as the public code does it (shared/BASELINES.md): an image pass (n // batch random
batches of the n training items, each a step of the image tower alone on
:func:`cmh.objectives.dcmh_loss.dcmh_loss` with F = the image buffer, G = the text buffer), then a text
pass (the same with the roles swapped), then B = sign(F + G) once. After each step the batch's
rows of its modality's buffer take the step's outputs (detached). The heads are linear (no tanh:
``ModelConfig.head_activation`` "none"); codes for evaluation are the sign of the outputs, as for
every model here. With ``--modalities text`` one buffer G is both ``own`` and ``other`` (the
single-modality form, as in DPSH).

The batches of a pass are a function of (seed, epoch, pass) alone and each training image's
crop and flip of (seed, epoch, item) (:class:`cmh.data.dataset.HashingDataset`), and the buffers are
saved in every checkpoint (``"dcmh"``), so ``--resume`` continues exactly.

Under torchrun each rank takes its slice of every batch (``--batch-size`` is the global batch)
and the buffers stay identical on every rank: after each step the slices' outputs and rows are
gathered and every rank writes all of them; gradients are averaged over the (equal) slices, and
BatchNorm statistics are rank 0's after each pass.
The likelihood and quantization terms are then exactly those of one process with the same batch;
the balance term differs slightly: each rank's sees the other ranks' rows of the current batch at
their buffer values (from the previous pass), not at this step's outputs.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import DataLoader

from cmh.data.caches.frozen_features import FeatureDataset
from cmh.data.dataset import HashingDataset, collate, seed_worker
from cmh.engine import torchrun
from cmh.evaluation.encoding import pad_id
from cmh.objectives.dcmh_loss import DcmhState, dcmh_loss, epoch_batches, similarity_rows
from cmh.objectives.registry import Objective, register_objective
from cmh.utils import progress
from cmh.utils.errors import UserError

PASSES = ("image", "text")


def new_state(run, model) -> DcmhState:
    """F and G standard normal from the run's seed, B = sign(F + G) (single modality: G only)."""
    n = len(run.data.splits["train"])
    if run.dist.enabled and n < run.args.batch_size:  # a pass's batches split in equal slices
        raise UserError(
            f"--objective dcmh under torchrun needs at least --batch-size {run.args.batch_size} "
            f"training items, found {n}: lower --batch-size"
        )
    generator = torch.Generator().manual_seed(run.args.seed)
    single = model.image is None
    return DcmhState(n, run.cfg.bits, generator, single_modality=single, device=run.device)


def pass_generator(seed: int, epoch: int, modality: str) -> torch.Generator:
    """The generator of one pass's batches: a function of (seed, epoch, pass) alone."""
    entropy = [seed % 2**32, epoch, PASSES.index(modality), 0xDC]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def pass_loader(run, modality: str, epoch: int) -> DataLoader:
    """The batches of one pass over the training items: n // batch random batches of distinct
    items (cmh.objectives.dcmh_loss.epoch_batches), each item loaded for ``modality`` only."""
    args, cfg, data = run.args, run.cfg, run.data
    n = len(data.splits["train"])
    batches = epoch_batches(n, min(args.batch_size, n), pass_generator(args.seed, epoch, modality))
    batches = [b.chunk(run.dist.world)[run.dist.rank] for b in batches]  # this rank's slices
    if run.features is not None:
        ds = FeatureDataset(run.features, data, "train")
        order = [b.tolist() for b in batches]
        return DataLoader(ds, batch_sampler=order, collate_fn=lambda batch: batch)
    ds = HashingDataset(
        data,
        "train",
        tokenizer=run.tokenizer if modality == "text" else None,
        max_length=cfg.max_length,
        image_size=cfg.image_size,
        train=True,
        bow=modality == "text" and cfg.text_encoder == "bow",
        images=modality == "image",
        seed=args.seed,
        framing=cfg.image_framing,
        norm=cfg.image_norm,
    )
    order = [[(epoch, i) for i in b.tolist()] for b in batches]  # crops from (seed, epoch, item)
    return DataLoader(
        ds,
        batch_sampler=order,
        num_workers=args.num_workers,
        collate_fn=functools.partial(collate, pad_id=pad_id(run.tokenizer)),
        worker_init_fn=seed_worker,
    )


def _step(run, model, optimizer, state: DcmhState, modality: str, batch: dict, rows, labels):
    """One optimiser step of ``modality``'s tower on the DCMH loss; its buffer rows updated."""
    args = run.args
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=args.amp):
        out = model.encode_image(batch) if modality == "image" else model.encode_text(batch)
    own, other = state.buffers(modality)
    similarity = similarity_rows(batch["labels"], labels)  # [b, n]: shares a label with item j
    terms = dcmh_loss(out.float(), rows, own, other, state.B, similarity, args.gamma, args.eta)
    if not torch.isfinite(terms["loss"]):
        raise FloatingPointError(
            f"non-finite DCMH loss ({terms['loss'].item()}) in the {modality} pass, batch item "
            f"ids {batch['index'].tolist()}; lower --lr"
        )
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torchrun.average_gradients(run.dist, model)  # equal slices: the rank mean is the batch's
    optimizer.step()
    rows, out = torchrun.gather(run.dist, rows), torchrun.gather(run.dist, out.detach())
    state.update(modality, rows, out.float())
    return {k: v.detach() for k, v in terms.items()}


def train_dcmh_epoch(run, model, optimizer, state: DcmhState, epoch: int) -> dict:
    """The image pass, the text pass (text alone with --modalities text), then B = sign(F + G).
    Returns the mean of each term over the steps of both passes, and each pass's mean loss."""
    model.train()
    train_ids = run.data.splits["train"]
    row_of = {item: r for r, item in enumerate(train_ids)}
    labels = torch.from_numpy(run.data.label_matrix(train_ids)).to(run.device)
    record: dict[str, float] = {}
    sums: dict[str, torch.Tensor] = {}
    steps = 0
    for modality in PASSES if model.image is not None else ("text",):
        pass_sum, pass_steps = 0.0, 0
        for batch in progress.bar(pass_loader(run, modality, epoch), f"epoch {epoch} {modality}"):
            batch = {k: v.to(run.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            batch = run.prepare_batch(batch, train=True)
            ids = batch["index"].tolist()
            rows = torch.tensor([row_of[i] for i in ids], dtype=torch.long, device=run.device)
            terms = _step(run, model, optimizer, state, modality, batch, rows, labels)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            pass_sum, pass_steps = pass_sum + float(terms["loss"]), pass_steps + 1
        record[f"{modality}_loss"] = pass_sum / max(1, pass_steps)
        steps += pass_steps
        torchrun.broadcast_module(run.dist, model)  # BatchNorm statistics: rank 0's
    state.update_codes()
    if not torchrun.same_on_all_ranks(
        run.dist, [t for t in (state.F, state.G, state.B) if t is not None]
    ):
        raise RuntimeError(f"epoch {epoch}: the DCMH buffers differ between the torchrun ranks")
    means = torchrun.all_mean(run.dist, {k: v / max(1, steps) for k, v in sums.items()})
    passes = {k: torch.tensor(v, device=run.device) for k, v in record.items()}
    return {k: float(v) for k, v in {**means, **torchrun.all_mean(run.dist, passes)}.items()}


def add_flags(add) -> None:
    add("--gamma", type=float, default=1.0, help="DCMH: weight of the quantization term")
    add("--eta", type=float, default=1.0, help="DCMH: weight of the bit-balance term")


def check(args) -> None:
    for flag in ("gamma", "eta"):
        if not args.get(flag) >= 0:
            raise UserError(f"--{flag} must be >= 0, got {args.get(flag)}")


DCMH = register_objective(
    Objective(
        name="dcmh",
        summary="DCMH (Jiang & Li, CVPR 2017): linear heads, B = sign(F + G) updated once per "
        "epoch, an image pass then a text pass",
        head_activation="none",
        head_norm="batchnorm",  # its balance term collapses codes on raw backbone features
        add_flags=add_flags,
        check=check,
        refuses={
            "image_cache": "its image pass reads the images of each batch itself",
            "global_triplets": "DCMH has no triplets",
            "cuda_graphs": "DCMH's alternating passes are not one repeated step",
            "resident_data": "its image pass reads the images of each batch itself",
        },
        new_state=new_state,
        train_epoch=train_dcmh_epoch,
    )
)
