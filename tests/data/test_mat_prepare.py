"""``data.py prepare --mat``: the circulated MATLAB benchmark files -> a prepared folder.

Each layout variant (merged and split DCMH files, MATLAB v7.3 read through h5py with its axes
reversed, v5, a plain h5py COCO file of int32 BGR pixels, a CLIP-era COCO set with several
captions per item) is written small (tests/mat_builders.py) and prepared through ``data.main``;
the prepared folder is checked against the arrays written: ids, labels, bag of words or
captions, pixels (the stored array read directly, and through HashingDataset against the same
transform of the known array), split sizes. Then the bad inputs, the atomic write, and short
train / evaluate / retrieve runs on a bag-of-words set and on a captions set.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_FLAGS
from mat_builders import TO_LAYOUT, cell, write_h5, write_v5, write_v73
from PIL import Image

import data
from cmh.data.caches.image_array import ImageArray, parse_ref
from cmh.data.sources import mat_prepare
from cmh.retrieval.index_folder import load_index
from cmh.utils.errors import UserError

N, H, W, VOCAB = 40, 12, 10, 30  # H != W: a swapped axis cannot pass
PIXEL = (5, 7, 2, 0)  # item, row, column, channel of a known value
PIXEL_VALUE = 201
NO_LABELS = 3  # an item with no label: dropped in every set
SIZES = ["--n-query", "6", "--n-train", "20", "--n-val", "4"]
WIDTHS = {"mirflickr": 24, "nuswide": 21, "coco": 80, "iapr": 255}


def make_set(n_labels: int, seed: int = 0, n: int = N) -> tuple[np.ndarray, ...]:
    """pixels uint8 [n, H, W, 3] (PIXEL known), labels [n, C] (item NO_LABELS empty), bow."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    pixels[PIXEL] = PIXEL_VALUE
    labels = (rng.random((n, n_labels)) < 0.3).astype(np.uint8)
    labels[:, 0] |= labels.sum(1) == 0  # every item labelled, but one
    labels[NO_LABELS] = 0
    bow = rng.integers(0, 3, (n, VOCAB)).astype(np.float64)  # MATLAB stores doubles
    return pixels, labels, bow


def prepare(out: Path, *argv: object) -> int:
    return data.main(["prepare", "--out", str(out), *map(str, argv)])


def stored_pixels(out: Path) -> np.ndarray:
    """The prepared folder's image array, read directly: uint8 [N, 3, H, W]."""
    (array,) = out.glob("images-*.u8")
    meta = json.loads(array.with_suffix(".json").read_text())
    assert meta["layout"] == "NCHW" and meta["dtype"] == "uint8"
    return np.fromfile(array, dtype=np.uint8).reshape(meta["shape"])


def check_items(out: Path, labels: np.ndarray, dropped: dict[int, str]) -> data.PreparedData:
    """ids = the kept positions, labels as columns, summary's drops with their reasons."""
    prepared = data.load_prepared(out)
    kept = [k for k in range(len(labels)) if k not in dropped]
    assert [it["id"] for it in prepared.items] == kept
    for item in prepared.items:
        assert item["labels"] == np.flatnonzero(labels[item["id"]]).tolist()
    summary = json.loads((out / "summary.json").read_text())
    assert {d["id"]: d["reason"] for d in summary["dropped"]} == dropped
    assert summary["source"] == "mat" and summary["splits"]["query"] == 6
    return prepared


def check_pixels(out: Path, prepared: data.PreparedData, pixels: np.ndarray) -> None:
    """The array holds the kept items' pixels in manifest order (the known one included), and
    HashingDataset gives exactly the evaluation transform of the known array."""
    stored = stored_pixels(out)
    kept = [it["id"] for it in prepared.items]
    np.testing.assert_array_equal(stored, pixels[kept].transpose(0, 3, 1, 2))
    item, y, x, channel = PIXEL
    assert stored[kept.index(item), channel, y, x] == PIXEL_VALUE
    ds = data.HashingDataset(prepared, "database", image_size=16)
    transform = data.image_transform(16, train=False)
    for i in (0, len(ds) - 1):
        want = transform(Image.fromarray(pixels[ds.ids[i]]))
        torch.testing.assert_close(ds[i]["image"], want, rtol=0, atol=0)


def check_bow(prepared: data.PreparedData, bow: np.ndarray) -> None:
    assert prepared.bow_dim() == VOCAB and not prepared.has_captions()
    for item in prepared.items:
        columns = np.flatnonzero(bow[item["id"]])
        want = {"indices": columns.tolist(), "counts": bow[item["id"], columns].tolist()}
        assert item["bow"] == want
    ds = data.HashingDataset(prepared, "train", images=False, bow=True)
    np.testing.assert_array_equal(ds[2]["bow"].numpy(), bow[ds.ids[2]])


# ---- layout variants ------------------------------------------------------------------


def test_merged_v73_hwcn(tmp_path: Path) -> None:
    """FLICKR-25K.mat as MATLAB -v7.3 writes it: h5py shows (N, 3, W, H), reversed back."""
    pixels, labels, bow = make_set(24)
    mat = write_v73(
        tmp_path / "FLICKR-25K.mat",
        {"images": pixels.transpose(TO_LAYOUT["HWCN"]), "LAll": labels, "YAll": bow},
    )
    out = tmp_path / "prep"
    assert prepare(out, "--mat", mat, "--format", "dcmh", "--dataset", "mirflickr", *SIZES) == 0
    prepared = check_items(out, labels, {NO_LABELS: "no labels"})
    check_pixels(out, prepared, pixels)
    check_bow(prepared, bow)
    assert prepared.items[0]["image"] == {"array": stored_name(out), "row": 0}
    assert prepared.items[0]["caption"] == "" and "captions" not in prepared.items[0]


def test_image_cache_builds_from_the_array(tmp_path: Path) -> None:
    """--image-cache decodes the array rows as it decodes files (PIL square resize)."""
    from cmh.data.caches.uint8_cache import ensure_cache

    pixels, labels, bow = make_set(24, seed=15)
    mat = write_h5(tmp_path / "set.mat", {"IAll": pixels, "LAll": labels, "YAll": bow})
    out = tmp_path / "prep"
    assert prepare(out, "--mat", mat, *DCMH) == 0
    prepared = data.load_prepared(out)
    path, meta = ensure_cache(prepared, 18)
    cache = np.fromfile(path, dtype=np.uint8).reshape(meta["shape"])
    for row in (0, len(prepared.items) - 1):
        image = Image.fromarray(pixels[prepared.items[row]["id"]])
        want = np.asarray(image.resize((18, 18), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
        np.testing.assert_array_equal(cache[row], want)


def stored_name(out: Path) -> str:
    (array,) = out.glob("images-*.u8")
    return array.name


def test_v73_other_orientation_labels_and_text_transposed(tmp_path: Path) -> None:
    """A copy whose LAll / YAll are stored the other way round (D x N) reads the same."""
    pixels, labels, bow = make_set(255, seed=1)
    mat = write_v73(
        tmp_path / "IAPR-TC12.mat",
        {"IAll": pixels.transpose(TO_LAYOUT["CHWN"]), "LAll": labels.T, "YAll": bow.T},
    )
    out = tmp_path / "prep"
    assert prepare(out, "--mat", mat, "--format", "dcmh", "--dataset", "iapr", *SIZES) == 0
    prepared = check_items(out, labels, {NO_LABELS: "no labels"})
    check_pixels(out, prepared, pixels)
    check_bow(prepared, bow)


def test_split_folder_mixed_containers_nuswide_drops_items_without_tags(tmp_path: Path) -> None:
    pixels, labels, bow = make_set(21, seed=2)
    bow[9] = 0  # NUS-WIDE: an item without a tag is dropped
    folder = tmp_path / "nus"
    folder.mkdir()
    names = [f"im{k}.jpg" for k in range(N)]
    write_v73(folder / "nus-wide-tc21-iall.mat", {"IAll": pixels.transpose(TO_LAYOUT["HWCN"])})
    write_v5(folder / "nus-wide-tc21-lall.mat", {"LAll": labels})
    write_v5(folder / "nus-wide-tc21-yall.mat", {"YAll": bow})
    write_v5(folder / "nus-wide-tc21-fall.mat", {"FAll": cell(names)})
    out = tmp_path / "prep"
    assert prepare(out, "--mat", folder, "--format", "dcmh", "--dataset", "nuswide", *SIZES) == 0
    prepared = check_items(out, labels, {NO_LABELS: "no labels", 9: "no text"})
    check_pixels(out, prepared, pixels)
    assert [it["name"] for it in prepared.items] == [names[it["id"]] for it in prepared.items]


def test_v5_merged(tmp_path: Path) -> None:
    pixels, labels, bow = make_set(24, seed=3)
    mat = write_v5(
        tmp_path / "flickr.mat",
        {"IAll": pixels.transpose(TO_LAYOUT["HWCN"]), "LAll": labels, "YAll": bow},
    )
    out = tmp_path / "prep"
    assert prepare(out, "--mat", mat, "--format", "dcmh", "--dataset", "mirflickr", *SIZES) == 0
    prepared = check_items(out, labels, {NO_LABELS: "no labels"})
    check_pixels(out, prepared, pixels)
    check_bow(prepared, bow)


def test_python_written_coco_int32_bgr(tmp_path: Path) -> None:
    """A plain h5py file (no MATLAB header: axes as stored) with int32 BGR pixels, as RGB."""
    pixels, labels, bow = make_set(80, seed=4)
    bgr = pixels[..., ::-1].astype(np.int32)
    mat = write_h5(tmp_path / "coco.mat", {"IAll": bgr, "LAll": labels, "YAll": bow})
    out = tmp_path / "prep"
    assert prepare(out, "--mat", mat, "--format", "dcmh", "--dataset", "coco", *SIZES) == 0
    prepared = check_items(out, labels, {NO_LABELS: "no labels"})
    check_pixels(out, prepared, pixels)  # PIXEL is channel 0 (red), stored in channel 2


def write_clip_set(root: Path, labels: np.ndarray, captions: list, skip: tuple = ()) -> Path:
    """index.mat (foreign absolute paths) / caption.mat / label.mat, and the images on disk as
    PNG (lossless) under root/images/coco, minus ``skip``; returns the .mat folder."""
    rng = np.random.default_rng(5)
    (root / "images" / "coco").mkdir(parents=True)
    for k in range(len(labels)):
        if k not in skip:
            pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / "coco" / f"{k:06d}.png")
    folder = root / "clip"
    folder.mkdir()
    paths = [f"/home/author/data/coco/{k:06d}.png" for k in range(len(labels))]
    write_v5(folder / "index.mat", {"index": cell(paths)})
    write_v5(folder / "caption.mat", {"caption": cell(captions)})
    write_v5(folder / "label.mat", {"category": labels})
    return folder


def coco_captions(n: int = N) -> list[list[str]]:
    return [[f"item {k} caption {j}" for j in range(5 + k % 2)] for k in range(n)]


def test_clip_coco_several_captions_and_a_missing_image(tmp_path: Path) -> None:
    _, labels, _ = make_set(80, seed=6)
    captions = coco_captions()
    folder = write_clip_set(tmp_path, labels, captions, skip=(11,))
    out = tmp_path / "prep"
    argv = ["--mat", folder, "--format", "clip", "--images", tmp_path / "images"]
    assert prepare(out, *argv, "--dataset", "coco", *SIZES) == 0
    prepared = check_items(out, labels, {NO_LABELS: "no labels", 11: "missing image"})
    assert not list(out.glob("images-*.u8"))  # images on disk stay files (today's JPEG path)
    for item in prepared.items:
        assert item["captions"] == captions[item["id"]]
        assert item["caption"] == captions[item["id"]][0]
        assert prepared.image_path(item) == tmp_path / "images/coco" / f"{item['id']:06d}.png"
    ds = data.HashingDataset(prepared, "query", image_size=16)
    image = Image.open(prepared.image_path(prepared.items[prepared.rows([ds.ids[0]])[0]]))
    want = data.image_transform(16, train=False)(image.convert("RGB"))
    torch.testing.assert_close(ds[0]["image"], want, rtol=0, atol=0)
    assert prepared.has_captions() and prepared.bow_dim() == len(prepared.vocab)
    assert prepare(tmp_path / "strict", *argv, "--dataset", "coco", *SIZES, "--strict") == 2
    assert not (tmp_path / "strict" / "summary.json").exists()


class WordTokenizer:
    """A stand-in tokenizer: each caption's token ids are the numbers in it."""

    def __call__(self, captions: list[str], **_: object) -> dict:
        ids = [[int(x) for x in re.findall(r"\d+", c)] for c in captions]
        return {"input_ids": ids, "overflow_to_sample_mapping": list(range(len(captions)))}


def test_training_draws_one_caption_per_step_evaluation_the_first(tmp_path: Path) -> None:
    _, labels, _ = make_set(80, seed=7)
    folder = write_clip_set(tmp_path, labels, coco_captions())
    out = tmp_path / "prep"
    argv = ["--mat", folder, "--format", "clip", "--images", tmp_path / "images"]
    assert prepare(out, *argv, "--dataset", "coco", *SIZES) == 0
    prepared = data.load_prepared(out)
    common = {"tokenizer": WordTokenizer(), "images": False, "seed": 3}
    train = data.HashingDataset(prepared, "train", train=True, **common)
    evaluation = data.HashingDataset(prepared, "train", train=False, **common)
    for i, item_id in enumerate(train.ids):
        first = [item_id, 0]  # "item K caption 0"
        assert evaluation[(0, i)]["input_ids"].tolist() == first
        assert train[i]["input_ids"].tolist() == first  # no epoch: the first caption
        drawn = {train[(epoch, i)]["input_ids"].tolist()[1] for epoch in range(12)}
        assert drawn <= set(range(5 + item_id % 2)) and len(drawn) > 1
        assert train[(4, i)]["input_ids"].tolist() == train[(4, i)]["input_ids"].tolist()
    assert len(train.caption_choices) == len(train) and not evaluation.caption_choices


# ---- protocols ------------------------------------------------------------------------


def test_protocol_sizes_and_explicit_sizes(tmp_path: Path, capsys) -> None:
    """dcmh: MIRFlickr 2,000 / 10,000; clip: 5,000 / 10,000; an explicit size wins; the
    database is all but the queries and holds train and val."""
    n = 15_120
    rng = np.random.default_rng(8)
    labels = np.zeros((n, 24), np.uint8)
    labels[np.arange(n), rng.integers(0, 24, n)] = 1
    images = np.zeros((n, 2, 2, 3), np.uint8)
    bow = rng.integers(0, 2, (n, 5)).astype(np.uint8)
    mat = write_h5(tmp_path / "f.mat", {"IAll": images, "LAll": labels, "YAll": bow})
    argv = ["--mat", mat, "--format", "dcmh", "--dataset", "mirflickr", "--n-val", "100"]
    cases = {
        ("dcmh", None): (2000, 10000),
        ("clip", None): (5000, 10000),
        ("clip", "300"): (300, 10000),
    }
    for (protocol, n_query), (want_query, want_train) in cases.items():
        out = tmp_path / f"{protocol}-{n_query}"
        extra = ["--protocol", protocol] + (["--n-query", n_query] if n_query else [])
        assert prepare(out, *argv, *extra) == 0
        splits = data.load_prepared(out).splits
        sizes = {k: len(v) for k, v in splits.items()}
        assert sizes == {"query": want_query, "database": n - want_query, "train": want_train,
                         "val": 100}  # fmt: skip
        assert set(splits["train"]) | set(splits["val"]) <= set(splits["database"])
    out = tmp_path / "too-small"
    assert prepare(out, "--mat", mat, "--format", "dcmh", "--dataset", "mirflickr",
                   "--n-train", "14000") == 2  # fmt: skip
    assert re.search(
        r"--n-train 14000 is larger than the 13120 database items.*--protocol dcmh for "
        r"mirflickr: 2000 queries, 14000 training items, of 15120 usable items",
        capsys.readouterr().err,
    )


# ---- bad input ------------------------------------------------------------------------


def bad_dcmh(tmp_path: Path, change: str) -> Path:
    """A merged file with one thing wrong."""
    pixels, labels, bow = make_set(24, seed=9)
    variables = {"IAll": pixels, "LAll": labels, "YAll": bow}
    if change == "no-text":
        del variables["YAll"]
    elif change == "disagree":
        variables["LAll"] = labels[:-1]
    elif change == "non-binary":
        variables["LAll"] = labels * 2
    elif change == "features":
        variables["YAll"] = bow + 0.5
    return write_h5(tmp_path / "set.mat", variables)


DCMH = ["--format", "dcmh", "--dataset", "mirflickr", *SIZES]
BAD = {
    "missing_key": ("no-text", DCMH, r"set\.mat: no text key \(YAll or TAll\); keys found: IAll"),
    "arrays_disagree": ("disagree", DCMH, r"disagree.*set\.mat:LAll shape \(39, 24\)"),
    "non_binary_labels": ("non-binary", DCMH, r"set\.mat:LAll: labels must be 0 or 1; found 2"),
    "dataset_width": (
        "",
        ["--format", "dcmh", "--dataset", "coco", *SIZES],
        r"--dataset coco does not fit --mat .*set\.mat: .*'coco' has 80 labels.*hold 24",
    ),
    "text_features": ("features", DCMH, r"set\.mat:YAll.*30-d features.*--text-encoder bow"),
    "clip_without_images": ("", ["--format", "clip", "--dataset", "mirflickr"], r"--images DIR"),
    "images_with_dcmh": ("", [*DCMH, "--images", "x"], r"--images x: --format dcmh reads"),
    "no_format": ("", ["--dataset", "mirflickr"], r"--mat needs --format"),
    "with_raw_flags": ("", [*DCMH, "--iapr-root", "x"], r"--mat and --iapr-root do not go"),
    "with_lists_flags": ("", [*DCMH, "--lists", "x"], r"--mat and --lists do not go together"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exit_2_with_its_message(tmp_path: Path, capsys, case: str) -> None:
    change, argv, message = BAD[case]
    mat = bad_dcmh(tmp_path, change)
    out = tmp_path / "prep"
    assert prepare(out, "--mat", mat, *argv) == 2
    assert re.search(message, capsys.readouterr().err), case
    assert not (out / "summary.json").exists()
    assert not list(tmp_path.glob("prep/.tmp-prepare-*"))


def test_format_flag_without_mat(tmp_path: Path, capsys) -> None:
    assert prepare(tmp_path / "p", "--format", "dcmh", "--iapr-root", tmp_path) == 2
    assert "--iapr-root and --format do not go together" in capsys.readouterr().err


def test_clip_missing_images_counted_strict_refuses(tmp_path: Path, capsys) -> None:
    _, labels, _ = make_set(24, seed=10)
    folder = write_clip_set(tmp_path, labels, [f"tags {k}" for k in range(N)], skip=(4, 8))
    argv = ["--mat", folder, "--format", "clip", "--images", tmp_path / "images"]
    argv += ["--dataset", "mirflickr", *SIZES]
    assert prepare(tmp_path / "strict", *argv, "--strict") == 2
    assert re.search(r"index\.mat:index: 2 of 40 image paths not found", capsys.readouterr().err)
    assert not (tmp_path / "strict" / "summary.json").exists()
    assert prepare(tmp_path / "prep", *argv) == 0
    summary = json.loads((tmp_path / "prep" / "summary.json").read_text())
    assert summary["dropped_counts"] == {"missing image": 2, "no labels": 1}


# ---- atomic output --------------------------------------------------------------------


def test_crash_while_copying_images_leaves_no_output(tmp_path: Path, monkeypatch) -> None:
    pixels, labels, bow = make_set(24, seed=11)
    mat = write_h5(tmp_path / "set.mat", {"IAll": pixels, "LAll": labels, "YAll": bow})
    out = tmp_path / "prep"
    real = mat_prepare._kept_blocks

    def crashing(*args):
        blocks = real(*args)
        yield next(blocks)
        raise OSError("disk full")

    monkeypatch.setattr(mat_prepare, "_kept_blocks", crashing)
    with pytest.raises(OSError, match="disk full"):
        prepare(out, "--mat", mat, *DCMH)
    assert not out.exists()  # no summary, no array, no staging folder: the folder taken back
    monkeypatch.undo()
    assert prepare(out, "--mat", mat, *DCMH) == 0
    first = stored_name(out)
    pixels[0] = 0  # other pixels: another array name, the old one removed
    mat = write_h5(tmp_path / "set.mat", {"IAll": pixels, "LAll": labels, "YAll": bow})
    assert prepare(out, "--mat", mat, *DCMH, "--overwrite") == 0
    assert stored_name(out) != first and len(list(out.glob("images-*"))) == 2  # .u8 + .json
    check_pixels(out, data.load_prepared(out), pixels)


def test_truncated_array_is_refused_on_load(tmp_path: Path) -> None:
    pixels, labels, bow = make_set(24, seed=12)
    mat = write_h5(tmp_path / "set.mat", {"IAll": pixels, "LAll": labels, "YAll": bow})
    out = tmp_path / "prep"
    assert prepare(out, "--mat", mat, *DCMH) == 0
    array = out / stored_name(out)
    array.write_bytes(array.read_bytes()[:-1])
    with pytest.raises(UserError, match=r"images-.*\.u8: .* bytes, but .*images-.*\.json says"):
        data.load_prepared(out)


# ---- training, evaluation, retrieval --------------------------------------------------


def jpeg(pixels: np.ndarray) -> bytes:
    """The thumbnail retrieve.py's page makes of an image this small (not enlarged)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def test_bow_set_trains_evaluates_and_retrieve_shows_its_images(tmp_path: Path, capsys) -> None:
    import evaluate
    import retrieve
    import train

    pixels, labels, bow = make_set(24, seed=13)
    mat = write_v73(
        tmp_path / "F.mat",
        {"images": pixels.transpose(TO_LAYOUT["HWCN"]), "LAll": labels, "YAll": bow},
    )
    prep, run = tmp_path / "prep", tmp_path / "run"
    assert prepare(prep, "--mat", mat, *DCMH) == 0
    flags = ["--data", str(prep), *TINY_FLAGS, "--epochs", "2"]
    assert train.main([*flags, "--out", str(tmp_path / "bert")]) == 2
    assert "--text-encoder bow" in capsys.readouterr().err  # bert needs captions
    assert train.main([*flags, "--out", str(run), "--text-encoder", "bow"]) == 0
    assert evaluate.main(["--checkpoint", str(run / "best.pt")]) == 0
    index = tmp_path / "index"
    assert retrieve.main(["index", "--checkpoint", str(run / "best.pt"), "--out", str(index)]) == 0
    images = load_index(index).items["images"]
    assert all(parse_ref(image) for image in images)
    item = load_index(index).items["ids"][0]
    for embed in ("--no-embed", "--embed"):
        page = tmp_path / "pages" / f"{embed}.html"
        argv = ["query", "--index", str(index), "--item", str(item), "--k", "4"]
        assert retrieve.main([*argv, "--html", str(page), embed]) == 0
        srcs = re.findall(r'<img src="([^"]+)"', page.read_text())
        assert len(srcs) == 5  # the query and 4 results
        if embed == "--embed":
            assert all(s.startswith("data:image/jpeg;base64,") for s in srcs)
        else:
            thumbs = [page.parent / s for s in srcs]
            assert all(t.suffix == ".jpg" and t.is_file() for t in thumbs)
            array, row = parse_ref(images[0])  # the query item's pixels, and its thumbnail
            assert thumbs[0].name == f"{array.stem}-{row}.jpg"
            assert thumbs[0].read_bytes() == jpeg(ImageArray(array).pixels(row))
            assert thumbs[0].read_bytes() == jpeg(pixels[item])  # the pixels written


def test_captions_set_trains_with_tiny_bert_and_evaluates(tmp_path: Path) -> None:
    import evaluate
    import train

    _, labels, _ = make_set(80, seed=14)
    folder = write_clip_set(tmp_path, labels, coco_captions())
    prep, run = tmp_path / "prep", tmp_path / "run"
    argv = ["--mat", folder, "--format", "clip", "--images", tmp_path / "images"]
    assert prepare(prep, *argv, "--dataset", "coco", "--protocol", "clip", *SIZES) == 0
    assert train.main(["--data", str(prep), "--out", str(run), *TINY_FLAGS, "--epochs", "2"]) == 0
    assert evaluate.main(["--checkpoint", str(run / "best.pt")]) == 0
