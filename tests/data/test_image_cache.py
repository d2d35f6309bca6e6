"""cmh/data/caches/uint8_cache.py: the uint8 cache (build, reuse, rebuild), the cached dataset and loader,
gpu_transform (crop/flip randomness, seeded determinism, eval closeness to the JPEG path), and
train.py --image-cache end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import data
import train
from cmh.data.caches.uint8_cache import (
    CachedImageDataset,
    cache_paths,
    cache_size,
    cached_loader,
    ensure_cache,
    gpu_transform,
)

MEAN = torch.tensor(data.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(data.IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture
def prepared(tiny_prepared, tmp_path):
    """A private copy of the tiny dataset (its own image_cache folder; images shared)."""
    root = tmp_path / "prepared"
    shutil.copytree(tiny_prepared, root, ignore=shutil.ignore_patterns("image_cache"))
    manifest = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    source = data.load_prepared(tiny_prepared)
    for item in manifest:  # image paths are relative to the folder: make them absolute
        item["image"] = str(source.image_path(item))
    (root / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    return data.load_prepared(root)


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD.to(x.device) + MEAN.to(x.device)  # back to [0, 1]


def test_cache_size_matches_training_resize():
    for s in (32, 64, 224):
        assert data.image_transform(s, train=True).resize_size == cache_size(s)
    assert cache_size(224) == 256


def test_build_reuse_and_rebuild(prepared):
    size = cache_size(32)
    array_path, meta = ensure_cache(prepared, size)
    meta_path = cache_paths(prepared.root, size)[1]
    assert meta == json.loads(meta_path.read_text())
    assert meta["shape"] == [len(prepared.items), 3, size, size]
    assert meta["ids"] == [i["id"] for i in prepared.items]
    assert array_path.stat().st_size == np.prod(meta["shape"])
    assert not list(array_path.parent.glob("*.tmp-*"))  # temporaries renamed away
    array = np.memmap(array_path, dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
    first = prepared.items[0]
    img = data.load_image(prepared.image_path(first), first["id"])
    expected = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(array[0], expected)
    stamp = array_path.stat().st_mtime_ns
    ensure_cache(prepared, size)  # reused: not rewritten
    assert array_path.stat().st_mtime_ns == stamp
    # a changed manifest (one item fewer) -> rebuilt with the new items
    manifest = prepared.root / "manifest.jsonl"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[1:]))
    fewer = data.PreparedData(
        prepared.root, prepared.items[1:], prepared.label_names, prepared.splits, prepared.vocab
    )
    _, meta2 = ensure_cache(fewer, size)
    assert meta2["shape"][0] == len(prepared.items) - 1
    assert meta2["manifest_sha256"] != meta["manifest_sha256"]


def test_truncated_array_is_rebuilt(prepared):
    size = cache_size(32)
    array_path, _ = ensure_cache(prepared, size)
    array_path.write_bytes(array_path.read_bytes()[:100])
    ensure_cache(prepared, size)
    assert array_path.stat().st_size == len(prepared.items) * 3 * size * size


def test_dataset_keys_dtypes_and_loader(prepared):
    jpeg = data.HashingDataset(prepared, "train", bow=True, images=False)
    ds = CachedImageDataset(prepared, "train", image_size=32, train=True, bow=True)
    item = ds[3]
    assert set(item) == {"labels", "index", "bow", "image_u8"}
    assert item["image_u8"].dtype == torch.uint8
    assert item["image_u8"].shape == (3, cache_size(32), cache_size(32))
    assert item["index"] == jpeg[3]["index"]
    assert torch.equal(item["bow"], jpeg[3]["bow"])
    assert torch.equal(item["labels"], jpeg[3]["labels"])
    loader = cached_loader(ds, 8, shuffle=True, seed=0, drop_last=True, pin_memory=False)
    batch = next(iter(loader))
    assert batch["image_u8"].shape == (8, 3, cache_size(32), cache_size(32))
    assert batch["image_u8"].dtype == torch.uint8
    assert batch["labels"].shape[0] == batch["index"].shape[0] == 8
    order = [next(iter(cached_loader(ds, 8, True, seed=0)))["index"] for _ in range(2)]
    assert torch.equal(order[0], order[1])  # seeded order


def test_dataset_with_workers_unpickles_without_the_map(prepared):
    ds = CachedImageDataset(prepared, "val", image_size=32)
    ds[0]  # opens the map in this process
    loader = cached_loader(ds, 4, shuffle=False, seed=0, num_workers=1, pin_memory=False)
    batch = next(iter(loader))
    assert torch.equal(batch["image_u8"][0], ds[0]["image_u8"])


def test_train_transform_crop_flip_and_determinism():
    g = torch.Generator().manual_seed(0)
    b, sc, s = 64, 12, 8
    u8 = torch.randint(0, 256, (b, 3, sc, sc), dtype=torch.uint8, generator=g)
    out1 = gpu_transform(u8, s, train=True, generator=torch.Generator().manual_seed(5))
    out2 = gpu_transform(u8, s, train=True, generator=torch.Generator().manual_seed(5))
    out3 = gpu_transform(u8, s, train=True, generator=torch.Generator().manual_seed(6))
    assert out1.dtype == torch.float32 and out1.shape == (b, 3, s, s)
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    pixels = torch.round(unnormalise(out1) * 255).to(torch.uint8)
    offsets, flips = set(), 0
    for i in range(b):  # every output is one crop of its input, flipped or not
        found = [
            (top, left, flip)
            for top in range(sc - s + 1)
            for left in range(sc - s + 1)
            for flip in (False, True)
            if torch.equal(
                pixels[i],
                (lambda c: c.flip(-1) if flip else c)(u8[i, :, top : top + s, left : left + s]),
            )
        ]
        assert len(found) == 1, i
        offsets.add(found[0][:2])
        flips += found[0][2]
    assert len(offsets) > 10  # offsets vary per sample (25 possible)
    assert 16 <= flips <= 48  # about half flipped (64 draws, p = 1/2)


def test_eval_transform_is_deterministic_and_exact_without_resize():
    u8 = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = gpu_transform(u8, 16, train=False)
    torch.testing.assert_close(unnormalise(out) * 255, u8.float(), atol=1e-3, rtol=0)
    assert gpu_transform(u8, 12, train=False).shape == (2, 3, 12, 12)
    with pytest.raises(ValueError):
        gpu_transform(u8.float(), 12, train=False)
    with pytest.raises(ValueError):
        gpu_transform(u8, 20, train=True)


def smooth_image(seed: int, width: int, height: int) -> Image.Image:
    """A photo-like smooth RGB image (low-frequency waves plus a little noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 4, 2).tolist() + [rng.uniform(0, 6)]
        wave = np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        channels.append(128 + 90 * wave + rng.normal(0, 6, wave.shape))
    return Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))


def test_eval_transform_close_to_jpeg_path():
    """Tolerance: on [0, 1] pixels, mean |difference| <= 0.01 and 99th percentile <= 0.04
    (square images: the two paths differ only by the intermediate Sc resize and rounding)."""
    s = 64
    jpeg_eval = data.image_transform(s, train=False)
    diffs = []
    for seed in range(4):
        img = smooth_image(seed, 300, 300)
        sc = cache_size(s)
        cached = img.resize((sc, sc), Image.Resampling.BILINEAR)
        u8 = torch.from_numpy(np.asarray(cached).transpose(2, 0, 1).copy())[None]
        ours = unnormalise(gpu_transform(u8, s, train=False))[0]
        theirs = unnormalise(jpeg_eval(img)[None])[0]
        diffs.append((ours - theirs).abs().flatten())
    d = torch.cat(diffs)
    assert d.mean() <= 0.01, float(d.mean())
    assert torch.quantile(d, 0.99) <= 0.04, float(torch.quantile(d, 0.99))


@pytest.mark.slow  # ~30 s on 2 busy CPU cores: model build, 1 epoch, final evaluation
def test_train_main_with_image_cache(prepared, tmp_path, tiny_flags, monkeypatch):
    """--image-cache trains and evaluates from the uint8 cache: every training batch and every
    encoded batch goes through gpu_transform (train=True for training, False for encoding)."""
    from cmh.engine import loop as training_loop

    calls = []

    def spy(u8, size, train, generator=None, **framing):
        calls.append((tuple(u8.shape), train))
        return gpu_transform(u8, size, train, generator, **framing)

    monkeypatch.setattr(training_loop, "gpu_transform", spy)
    out = tmp_path / "run"
    argv = ["--data", str(prepared.root), "--out", str(out), *tiny_flags, "--epochs", "1"]
    assert train.main([*argv, "--image-cache"]) == 0
    assert cache_paths(prepared.root, cache_size(32))[0].is_file()
    assert json.loads((out / "args.json").read_text())["image_cache"] is True
    steps = len(prepared.splits["train"]) // 16
    assert sum(t for _, t in calls) == steps  # every training step: a random crop of the cache
    assert {shape[1:] for shape, _ in calls} == {(3, cache_size(32), cache_size(32))}
    assert sum(not t for _, t in calls) >= 4  # val, train, query, database encoded from it


def test_train_transform_draws_from_the_global_cpu_rng():
    """generator=None uses torch's default CPU generator (saved in train.py's checkpoints)."""
    u8 = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    torch.manual_seed(3)
    a = gpu_transform(u8, 8, train=True)
    torch.manual_seed(3)
    b = gpu_transform(u8, 8, train=True)
    assert torch.equal(a, b)


def test_building_the_cache_draws_nothing_from_the_global_rng(prepared):
    """A run that builds the cache must train exactly like one that finds it built."""
    import shutil

    shutil.rmtree(prepared.root / "image_cache", ignore_errors=True)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    ensure_cache(prepared, 20)
    assert torch.equal(torch.get_rng_state(), state)
