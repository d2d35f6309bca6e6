"""--resident-data (cmh/data/caches/resident_batches.py): the batches gathered on the device are the
--image-cache loader's batches — order, crops, flips, caption draws, padding — bit for bit."""

from __future__ import annotations

import logging

import pytest
import torch

import train
from cmh.data.caches import resident_batches
from cmh.data.caches.resident_batches import ResidentBatches, longest_caption, resident_or_none
from cmh.engine import run_setup
from cmh.engine.loop import Run
from cmh.evaluation.encoding import pad_id
from cmh.utils.errors import UserError

BATCH = 4


@pytest.fixture()
def run(tiny_prepared, tmp_path, tiny_flags):
    args = train.parse_args(["--data", str(tiny_prepared), "--out", str(tmp_path / "r"),
                             *tiny_flags, "--image-cache", "--batch-size", str(BATCH)])  # fmt: skip
    data, _, tokenizer, cfg, _, _ = run_setup.prepare_run(args)
    return Run.create(args, data, tokenizer, cfg, torch.device("cpu"), tmp_path)


def _several_captions(dataset) -> None:
    """Give a few items several captions (as COCO's have): each epoch draws one of them."""
    for i in (0, 3, 5):
        dataset.caption_choices[i] = [dataset.input_ids[i], dataset.input_ids[i + 1][:5]]


def _epoch(batches, epoch: int, prepare) -> list[dict]:
    batches.sampler.set_epoch(epoch)
    torch.manual_seed(11)  # the crops' and flips' draws: the default generator, in both paths
    return [prepare(b) for b in batches]


def test_resident_batches_are_the_loader_batches(run):
    loader = run.loader("train", train=True)
    _several_captions(loader.dataset)
    # as train.py builds it: the run's framing and mean/std (the tiny timm model's own, not
    # ImageNet's), its seed and batch size
    resident = resident_or_none(loader.dataset, run.device, run.args, pad_id(run.tokenizer),
                                logging.getLogger("test"))  # fmt: skip
    assert run.args.image_norm not in ("imagenet", None)  # a path that dropped it would differ
    assert len(resident) == len(loader.dataset) // BATCH  # the partial batch dropped
    for epoch in (1, 2, 3):
        expected = _epoch(loader, epoch, lambda b: run.prepare_batch(b, train=True))
        got = _epoch(resident, epoch, lambda b: b)
        assert len(got) == len(resident)
        for a, b in zip(got, expected, strict=False):
            assert set(a) == set(b)
            for k in a:
                assert torch.equal(a[k], b[k]), (epoch, k)
    widths = {b["input_ids"].shape[1] for b in got}
    assert len(widths) > 1, "batches pad to their own longest caption, as the loader does"


def test_each_epoch_draws_its_own_caption(run):
    loader = run.loader("train", train=True)
    _several_captions(loader.dataset)
    resident = ResidentBatches(loader.dataset, run.device, BATCH, 0, pad_id(run.tokenizer))
    rows = {tuple(resident._caption_rows(e)[[0, 3, 5]].tolist()) for e in range(12)}
    assert len(rows) > 1  # not always the first caption


def test_longest_caption_counts_every_caption(run):
    loader = run.loader("train", train=True)
    ds = loader.dataset
    longest = max(len(t) for t in ds.input_ids)
    assert longest_caption(ds) == longest
    ds.caption_choices[0] = [ds.input_ids[0], list(range(longest + 3))]
    assert longest_caption(ds) == longest + 3


def test_a_split_smaller_than_a_batch_is_refused(run):
    ds = run.loader("train", train=True).dataset
    with pytest.raises(UserError, match="lower --batch-size"):
        ResidentBatches(ds, run.device, len(ds) + 1, 0, 0)


def test_too_large_for_the_device_falls_back_to_the_loader(run, monkeypatch, caplog):
    ds = run.loader("train", train=True).dataset
    monkeypatch.setattr(resident_batches, "fits_on", lambda device, n: (False, "9 GiB of 1 GiB"))
    with caplog.at_level(logging.INFO):
        assert resident_or_none(ds, run.device, run.args, 0, logging.getLogger("t")) is None
    assert "using the loader instead" in caplog.text and "9 GiB of 1 GiB" in caplog.text
    monkeypatch.undo()
    assert isinstance(resident_or_none(ds, run.device, run.args, 0, logging.getLogger("t")),
                      ResidentBatches)  # fmt: skip
