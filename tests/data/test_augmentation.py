"""A training item's crop and flip are drawn from (seed, epoch, item id) alone, as the docs promise:
the same item in two datasets of different make-up gets the same crop, drawn by hand here; the
crop changes from one epoch to the next, and so does the loader's order."""

from __future__ import annotations

import json
import shutil

import torch

from cmh.data.caches.image_array import load_item_image
from cmh.data.dataset import HashingDataset
from cmh.data.image_transforms import image_transform, item_generator
from cmh.data.prepared_folder import load_prepared

SEED, SIZE = 3, 32


def _other_make_up(prepared, tmp_path):
    """A copy of ``prepared`` whose training split lists its items in reverse and lacks the first:
    every item sits at another row."""
    other = tmp_path / "other"
    shutil.copytree(prepared, other)
    (tmp_path / "iaprtc12").symlink_to(prepared.parent / "iaprtc12")  # the images, relative paths
    splits = json.loads((other / "splits.json").read_text())
    splits["train"] = list(reversed(splits["train"]))[:-1]
    (other / "splits.json").write_text(json.dumps(splits))
    return other


def _train_set(root) -> HashingDataset:
    return HashingDataset(load_prepared(root), "train", image_size=SIZE, train=True, seed=SEED)


def test_a_crop_is_a_function_of_seed_epoch_and_item_id(tiny_prepared, tmp_path):
    ours, theirs = _train_set(tiny_prepared), _train_set(_other_make_up(tiny_prepared, tmp_path))
    data = load_prepared(tiny_prepared)
    by_hand = image_transform(SIZE, True, "squash-crop", "imagenet")
    for item_id in theirs.ids[:8]:
        i, j = ours.ids.index(item_id), theirs.ids.index(item_id)
        assert i != j  # another row in the other dataset
        item = data.items[data.rows([item_id])[0]]
        image = load_item_image(data.image_path(item), item_id, {})
        drawn = by_hand(image, item_generator(SEED, 2, item_id))
        assert torch.equal(ours[(2, i)]["image"], drawn)
        assert torch.equal(theirs[(2, j)]["image"], drawn)


def test_the_crop_changes_from_epoch_to_epoch(tiny_prepared):
    ours = _train_set(tiny_prepared)
    changed = [not torch.equal(ours[(1, i)]["image"], ours[(2, i)]["image"]) for i in range(12)]
    assert sum(changed) >= 10  # a flip or a crop offset may repeat by chance, rarely both
    assert torch.equal(ours[(1, 0)]["image"], ours[(1, 0)]["image"])  # and it is repeatable


def test_training_draws_a_new_order_and_new_crops_each_epoch(
    tiny_prepared, tmp_path, tiny_flags, monkeypatch
):
    """What train.py asks of the dataset, item by item: every epoch as many items, none twice, in
    an order of its own, with that epoch's number (so its crop is the epoch's)."""
    import train

    seen: list[tuple[int, int]] = []
    real = HashingDataset.__getitem__

    def spy(self, key):
        if isinstance(key, tuple):  # training items come as (epoch, row)
            seen.append((key[0], self.ids[key[1]]))
        return real(self, key)

    monkeypatch.setattr(HashingDataset, "__getitem__", spy)
    argv = [
        "--data",
        str(tiny_prepared),
        "--out",
        str(tmp_path / "r"),
        *tiny_flags,
        "--epochs",
        "2",
    ]
    assert train.main(argv) == 0
    one = [i for e, i in seen if e == 1]
    two = [i for e, i in seen if e == 2]
    assert {e for e, _ in seen} == {1, 2} and len(one) == len(two) == len(seen) // 2
    assert len(set(one)) == len(one) and len(set(two)) == len(two)
    assert one != two
