"""Reading the circulated MATLAB benchmark files (cmh.data.sources.mat_files, cmh.data.sources.mat_sets, cmh.data.published_splits).

No real file is available, so every test writes a small one of the same layout: MATLAB v7.3
(HDF5 with the MATLAB header block, axes reversed, ``MATLAB_class`` attributes, cells as
object references), plain h5py files written from Python (axes as stored) and v5 files
(scipy.io.savemat). Each read is checked against the arrays written: labels, text and a known
pixel (item, row, column, channel).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from mat_builders import TO_LAYOUT, WRITERS, cell, write_h5, write_v5, write_v73

from cmh.data.published_splits import check_dataset, split_sizes
from cmh.data.sources.mat_files import MatFile
from cmh.data.sources.mat_sets import read_clip, read_dcmh
from cmh.utils.errors import UserError

N, H, W, N_LABELS, VOCAB = 6, 5, 7, 4, 9  # all different, so no axis can pass for another
PIXEL = (4, 2, 5, 0)  # item, row, column, channel of a known value
PIXEL_VALUE = 201


# ---- writers ---------------------------------------------------------------------------


def make_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pixels uint8 [N, H, W, 3] (PIXEL set to PIXEL_VALUE), labels [N, C], bow [N, V]."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    pixels[PIXEL] = PIXEL_VALUE
    labels = rng.integers(0, 2, (N, N_LABELS)).astype(np.uint8)
    bow = rng.integers(0, 4, (N, VOCAB)).astype(np.float64)  # MATLAB stores doubles
    return pixels, labels, bow


def read_all(images) -> np.ndarray:
    """Every chunk (size 4) of a MatImages, checked for size and dtype, concatenated."""
    chunks = list(images.chunks(4))
    assert [len(c) for c in chunks] == [4, N - 4]
    assert all(c.dtype == np.uint8 and c.flags.c_contiguous for c in chunks)
    return np.concatenate(chunks)


def assert_pixels(images, pixels: np.ndarray) -> None:
    """Shape (N, H, W, 3), the known pixel, and every other pixel."""
    assert images.shape == (N, H, W, 3)
    out = read_all(images)
    assert out[PIXEL] == PIXEL_VALUE
    np.testing.assert_array_equal(out, pixels)


# ---- DCMH family ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(TO_LAYOUT))
@pytest.mark.parametrize("container", list(WRITERS))
def test_images_every_layout_and_container(tmp_path: Path, container: str, layout: str) -> None:
    pixels, labels, bow = make_arrays()
    images_key = "IAll" if container == "v5" else "images"
    path = WRITERS[container](
        tmp_path / "FLICKR-25K.mat",
        {images_key: pixels.transpose(TO_LAYOUT[layout]), "LAll": labels, "YAll": bow},
    )
    mat_set = read_dcmh(path)
    assert mat_set.n == N
    assert mat_set.images.layout == layout
    assert_pixels(mat_set.images, pixels)
    np.testing.assert_array_equal(mat_set.labels, labels)
    assert mat_set.labels.dtype == np.uint8
    np.testing.assert_array_equal(mat_set.bow, bow)
    assert mat_set.bow.dtype == np.int32 and mat_set.text_features is None
    assert any(f"layout {layout}" in note for note in mat_set.source)


@pytest.mark.parametrize("text_t", [False, True])
@pytest.mark.parametrize("labels_t", [False, True])
@pytest.mark.parametrize("container", ["v73", "h5py"])
def test_labels_and_text_either_orientation(
    tmp_path: Path, container: str, labels_t: bool, text_t: bool
) -> None:
    pixels, labels, bow = make_arrays(1)
    path = WRITERS[container](
        tmp_path / "set.mat",
        {
            "IAll": pixels.transpose(TO_LAYOUT["HWCN"]),
            "LAll": labels.T if labels_t else labels,
            "YAll": bow.T if text_t else bow,
        },
    )
    mat_set = read_dcmh(path)
    np.testing.assert_array_equal(mat_set.labels, labels)
    np.testing.assert_array_equal(mat_set.bow, bow)
    assert read_all(mat_set.images)[PIXEL] == PIXEL_VALUE
    label_note = next(s for s in mat_set.source if s.startswith("labels:"))
    assert ("transposed" in label_note) == labels_t


def test_v73_axes_reversed_but_plain_h5py_not(tmp_path: Path) -> None:
    """The same h5py array shape means MATLAB's reversed axes only in a MATLAB-written file."""
    matrix = np.arange(6, dtype=np.float64).reshape(2, 3)
    with MatFile(write_v73(tmp_path / "m.mat", {"A": matrix})) as mat:
        assert mat.shape("A") == (2, 3) and mat.reversed_axes("A")
        np.testing.assert_array_equal(mat.read("A"), matrix)
    with MatFile(write_h5(tmp_path / "p.mat", {"A": matrix})) as mat:
        assert mat.shape("A") == (2, 3) and not mat.reversed_axes("A")
        np.testing.assert_array_equal(mat.read("A"), matrix)


def test_split_folder_mixed_containers(tmp_path: Path) -> None:
    pixels, labels, bow = make_arrays(2)
    names = [f"im{i + 1}.jpg" for i in range(N)]
    write_v73(tmp_path / "mirflickr25k-iall.mat", {"IAll": pixels.transpose(TO_LAYOUT["HWCN"])})
    write_v5(tmp_path / "mirflickr25k-lall.mat", {"LAll": labels})
    write_v5(tmp_path / "mirflickr25k-yall.mat", {"YAll": bow.T})
    write_v5(tmp_path / "mirflickr25k-fall.mat", {"FAll": cell(names)})
    mat_set = read_dcmh(tmp_path)
    assert_pixels(mat_set.images, pixels)
    np.testing.assert_array_equal(mat_set.labels, labels)
    np.testing.assert_array_equal(mat_set.bow, bow)
    assert mat_set.image_names == names
    assert any("v7.3" in s for s in mat_set.source) and any("v5" in s for s in mat_set.source)


def test_split_folder_missing_file_lists_files(tmp_path: Path) -> None:
    pixels, _, bow = make_arrays()
    write_v73(tmp_path / "nus-wide-tc21-iall.mat", {"IAll": pixels.transpose(TO_LAYOUT["HWCN"])})
    write_v5(tmp_path / "nus-wide-tc21-yall.mat", {"YAll": bow})
    with pytest.raises(UserError, match=r"no \*-lall\.mat.*nus-wide-tc21-iall\.mat"):
        read_dcmh(tmp_path)


def test_int32_bgr_images_and_bert_text(tmp_path: Path) -> None:
    pixels, labels, _ = make_arrays(3)
    features = np.random.default_rng(3).normal(size=(N, 12)).astype(np.float32)
    bgr = pixels[..., ::-1].astype(np.int32)
    path = write_h5(tmp_path / "coco.mat", {"IAll": bgr, "LAll": labels, "TAll": features})
    mat_set = read_dcmh(path)
    assert mat_set.images.bgr
    out = read_all(mat_set.images)
    assert out[PIXEL] == PIXEL_VALUE  # PIXEL is channel 0 (R), stored in channel 2
    np.testing.assert_array_equal(out, pixels)
    assert mat_set.bow is None
    np.testing.assert_allclose(mat_set.text_features, features)


def test_int32_pixel_out_of_range(tmp_path: Path) -> None:
    pixels, labels, bow = make_arrays()
    bgr = pixels.astype(np.int32)
    bgr[5, 1, 1, 1] = 300
    path = write_h5(tmp_path / "coco.mat", {"IAll": bgr, "LAll": labels, "YAll": bow})
    with pytest.raises(UserError, match=r"coco\.mat:IAll.*0\.\.255.*300 among items 4\.\.5"):
        list(read_dcmh(path).images.chunks(4))


def test_hdf5_images_stream_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the image array is read until chunks() runs, and then one chunk at a time."""
    pixels, labels, bow = make_arrays()
    write_v73(tmp_path / "x-iall.mat", {"IAll": pixels.transpose(TO_LAYOUT["HWCN"])})
    write_v5(tmp_path / "x-lall.mat", {"LAll": labels})
    write_v5(tmp_path / "x-yall.mat", {"YAll": bow})
    read_sizes = []
    original = h5py.Dataset.__getitem__

    def recording(self: h5py.Dataset, index: object) -> np.ndarray:
        value = original(self, index)
        if getattr(value, "ndim", 0) == 4:
            read_sizes.append(value.size)
        return value

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    mat_set = read_dcmh(tmp_path)
    assert mat_set.images.array.data is None and read_sizes == []
    out = np.concatenate(list(mat_set.images.chunks(2)))
    assert read_sizes == [2 * H * W * 3] * 3
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("container", ["v73", "v5"])
def test_sparse_bag_of_words(tmp_path: Path, container: str) -> None:
    pixels, labels, bow = make_arrays(4)
    sparse = scipy.sparse.csc_matrix(bow)
    variables = {"IAll": pixels.transpose(TO_LAYOUT["HWCN"]), "LAll": labels}
    if container == "v5":
        path = write_v5(tmp_path / "iapr.mat", {**variables, "YAll": sparse})
    else:
        path = write_v73(tmp_path / "iapr.mat", variables)
        with h5py.File(path, "a") as file:
            group = file.create_group("YAll")
            group["data"], group["ir"], group["jc"] = sparse.data, sparse.indices, sparse.indptr
            group.attrs["MATLAB_sparse"] = np.uint64(N)
            group.attrs["MATLAB_class"] = np.bytes_("double")
    np.testing.assert_array_equal(read_dcmh(path).bow, bow)


# ---- strings --------------------------------------------------------------------------


def test_v5_strings_char_padding_and_cells(tmp_path: Path) -> None:
    path = write_v5(
        tmp_path / "s.mat",
        {
            "chars": np.array(["a b   ", "cd    ", "efghij"]),  # MATLAB char(): padded
            "column": cell(["one", "", "three"]),
            "row": cell(["x", "y"], shape=(1, 2)),
            "nested": cell([["p", "q"], ["r"]]),
            "rows_in_cell": cell([np.array(["cap a", "cap b"]), "single"]),
            "grid": cell(list("abcdef"), shape=(3, 2)),
            "grid_t": cell(list("abcdef"), shape=(2, 3)),
        },
    )
    with MatFile(path) as mat:
        assert mat.kind == "v5" and mat.is_text("chars") and mat.is_text("row")
        assert mat.strings("chars") == ["a b", "cd", "efghij"]
        assert mat.strings("column") == ["one", "", "three"]
        assert mat.strings("row") == ["x", "y"]
        assert mat.strings("nested") == [["p", "q"], ["r"]]
        assert mat.strings("rows_in_cell") == [["cap a", "cap b"], "single"]
        assert mat.strings("grid") == [["a", "b"], ["c", "d"], ["e", "f"]]  # N x K: K per item
        assert mat.strings("grid_t", n_items=3) == [["a", "d"], ["b", "e"], ["c", "f"]]


def test_v73_strings_char_matrix_references_and_empty(tmp_path: Path) -> None:
    path = write_v73(
        tmp_path / "s.mat",
        {
            "chars": np.array(["ab  ", "cdef"]),
            "word": "hello",
            "cells": ["one", "", "three"],
            "nested": [["p", "q"], ["r"]],
            "grid": np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object),
        },
    )
    with MatFile(path) as mat:
        assert mat.keys() == ["cells", "chars", "grid", "nested", "word"]
        assert mat.kind == "v7.3 (HDF5)"
        assert mat.strings("chars") == ["ab", "cdef"]
        assert mat.strings("word") == ["hello"]
        assert mat.strings("cells") == ["one", "", "three"]
        assert mat.strings("nested") == [["p", "q"], ["r"]]
        assert mat.strings("grid") == [["a", "b"], ["c", "d"], ["e", "f"]]


# ---- CLIP-era toolboxes ---------------------------------------------------------------


def make_images_dir(root: Path, count: int = N, skip: tuple[int, ...] = ()) -> Path:
    """images/mirflickr/im{i}.jpg for i < count (minus ``skip``), plus a decoy images/im0.jpg."""
    folder = root / "images"
    (folder / "mirflickr").mkdir(parents=True)
    for i in range(count):
        if i not in skip:
            (folder / "mirflickr" / f"im{i}.jpg").write_bytes(b"jpg")
    (folder / "im0.jpg").write_bytes(b"decoy")  # the longer suffix mirflickr/im0.jpg wins
    return folder


def stored_paths() -> list[str]:
    """Foreign absolute paths, POSIX and Windows, as the authors' machines wrote them."""
    return [
        f"/home/author/data/mirflickr/im{i}.jpg"
        if i % 2
        else f"C:\\Users\\author\\mirflickr\\im{i}.jpg"
        for i in range(N)
    ]


def test_clip_v5_padded_index_and_row_cell_captions(tmp_path: Path) -> None:
    _, labels, _ = make_arrays(5)
    images = make_images_dir(tmp_path)
    paths = stored_paths()
    width = max(len(p) for p in paths)
    captions = [f"tag{i} sky" for i in range(N)]
    clip = tmp_path / "clip"
    clip.mkdir()
    write_v5(clip / "index.mat", {"index": np.array([p.ljust(width) for p in paths])})
    write_v5(clip / "caption.mat", {"caption": cell(captions, shape=(1, N))})
    write_v5(clip / "label.mat", {"category": labels})
    mat_set = read_clip(clip, images, strict=True)
    assert mat_set.n == N and mat_set.missing == {}
    assert mat_set.image_paths == [images / "mirflickr" / f"im{i}.jpg" for i in range(N)]
    assert mat_set.image_names == paths
    assert mat_set.captions == [[c] for c in captions]
    np.testing.assert_array_equal(mat_set.labels, labels)


def test_clip_coco_several_captions_per_item(tmp_path: Path) -> None:
    _, labels, _ = make_arrays(6)
    images = make_images_dir(tmp_path)
    captions = [[f"item {i} caption {j}" for j in range(5 + i % 2)] for i in range(N)]
    clip = tmp_path / "clip"
    clip.mkdir()
    write_v5(clip / "index.mat", {"imgs": cell(stored_paths())})
    write_v5(clip / "caption.mat", {"caption": cell(captions)})
    write_v5(clip / "label.mat", {"LAll": labels.T})
    mat_set = read_clip(clip, images)
    assert mat_set.captions == captions
    assert mat_set.captions[3][4] == "item 3 caption 4"
    np.testing.assert_array_equal(mat_set.labels, labels)


def test_clip_v73_references_and_tags_char_matrix(tmp_path: Path) -> None:
    _, labels, _ = make_arrays(7)
    images = make_images_dir(tmp_path)
    tags = [f"t{i} " * (1 + i % 3) for i in range(N)]
    width = max(len(t) for t in tags)
    clip = tmp_path / "clip"
    clip.mkdir()
    write_v73(clip / "index.mat", {"FAll": stored_paths()})
    write_v73(clip / "caption.mat", {"tags": np.array([t.ljust(width) for t in tags])})
    write_v73(clip / "label.mat", {"labels": labels})
    mat_set = read_clip(clip, images)
    assert mat_set.captions == [[t.strip()] for t in tags]
    assert mat_set.image_paths[5] == images / "mirflickr" / "im5.jpg"
    np.testing.assert_array_equal(mat_set.labels, labels)


def test_clip_bag_of_words_caption(tmp_path: Path) -> None:
    """A caption.mat that holds a numeric YAll (V x N here) is read as a bag of words."""
    _, labels, bow = make_arrays(8)
    images = make_images_dir(tmp_path)
    clip = tmp_path / "clip"
    clip.mkdir()
    write_v5(clip / "index.mat", {"index": cell(stored_paths())})
    write_v5(clip / "caption.mat", {"YAll": bow.T})
    write_v5(clip / "label.mat", {"category": labels})
    mat_set = read_clip(clip, images)
    assert mat_set.captions is None
    np.testing.assert_array_equal(mat_set.bow, bow)
    np.testing.assert_array_equal(mat_set.labels, labels)


def test_clip_misses_counted_and_strict_error(tmp_path: Path) -> None:
    _, labels, _ = make_arrays()
    images = make_images_dir(tmp_path, skip=(2, 4))
    clip = tmp_path / "clip"
    clip.mkdir()
    write_v5(clip / "index.mat", {"index": cell(stored_paths())})
    write_v5(clip / "caption.mat", {"caption": cell([f"c{i}" for i in range(N)])})
    write_v5(clip / "label.mat", {"label": labels})
    mat_set = read_clip(clip, images)
    assert sorted(mat_set.missing) == [2, 4]
    assert "im2.jpg" in mat_set.missing[2] and str(images) in mat_set.missing[2]
    assert mat_set.image_paths[2] is None and mat_set.image_paths[3] is not None
    assert any("2 missing" in s for s in mat_set.source)
    with pytest.raises(UserError, match=r"index\.mat:index: 2 of 6 image paths.*im2\.jpg"):
        read_clip(clip, images, strict=True)


# ---- bad input ------------------------------------------------------------------------


def test_missing_key_lists_keys_found(tmp_path: Path) -> None:
    pixels, labels, bow = make_arrays()
    path = write_v5(tmp_path / "f.mat", {"IAll": pixels, "Labels2": labels, "YAll": bow})
    with pytest.raises(
        UserError, match=r"f\.mat: no labels key \(LAll\); keys found: IAll, Labels2, YAll"
    ):
        read_dcmh(path)


def test_clip_missing_key_lists_keys_found(tmp_path: Path) -> None:
    (tmp_path / "clip").mkdir()
    write_v5(tmp_path / "clip" / "index.mat", {"paths": cell(stored_paths())})
    write_v5(tmp_path / "clip" / "caption.mat", {"caption": cell(["a"] * N)})
    write_v5(tmp_path / "clip" / "label.mat", {"category": make_arrays()[1]})
    with pytest.raises(
        UserError, match=r"no index key \(index or imgs or FAll\); keys found: paths"
    ):
        read_clip(tmp_path / "clip", make_images_dir(tmp_path))


def test_disagreeing_counts_name_arrays_and_shapes(tmp_path: Path) -> None:
    pixels, labels, bow = make_arrays()
    path = write_h5(tmp_path / "f.mat", {"IAll": pixels, "LAll": labels, "YAll": bow[:-1]})
    with pytest.raises(UserError, match=r"disagree") as error:
        read_dcmh(path)
    message = str(error.value)
    assert f"{path}:IAll shape (6, 5, 7, 3)" in message
    assert f"{path}:LAll shape (6, 4)" in message
    assert f"{path}:YAll shape (5, 9)" in message


def test_non_binary_labels(tmp_path: Path) -> None:
    pixels, labels, bow = make_arrays()
    labels[3, 1] = 2
    path = write_v5(tmp_path / "f.mat", {"IAll": pixels, "LAll": labels.T, "YAll": bow})
    with pytest.raises(UserError, match=r"f\.mat:LAll: labels must be 0 or 1; found 2 at item 3"):
        read_dcmh(path)


def test_matlab_string_object_refused(tmp_path: Path) -> None:
    path = write_v73(tmp_path / "caption.mat", {"caption": ["a"]})
    with h5py.File(path, "a") as file:
        file["caption"].attrs["MATLAB_class"] = np.bytes_("string")
    with MatFile(path) as mat, pytest.raises(UserError, match=r"caption\.mat:caption.*cellstr"):
        mat.strings("caption")


def test_not_a_mat_file(tmp_path: Path) -> None:
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(UserError, match=r"junk\.mat: not a MATLAB \.mat file"):
        read_dcmh(tmp_path / "junk.mat")


# ---- protocols ------------------------------------------------------------------------


def test_dataset_label_width() -> None:
    check_dataset("mirflickr", 24)
    check_dataset("nuswide", 21)
    check_dataset("nuswide", 10)
    with pytest.raises(UserError, match=r"'coco' has 80 labels, but the files hold 24.*mirflickr"):
        check_dataset("coco", 24)
    with pytest.raises(UserError, match=r"'iapr' has 255 labels"):
        check_dataset("iapr", 21)
    with pytest.raises(UserError, match=r"unknown dataset 'flickr'"):
        check_dataset("flickr", 24)


def test_split_sizes() -> None:
    assert split_sizes("nuswide", "dcmh") == (2100, 10500)
    assert split_sizes("iapr", "dcmh") == (2000, 10000)
    assert split_sizes("mirflickr", "clip") == (5000, 10000)
    assert split_sizes("coco", "dcmh", n_query=100) == (100, 10000)
    assert split_sizes("mirflickr", "dcmh", n_train=0) == (2000, 0)
    with pytest.raises(UserError, match=r"unknown protocol 'dscmr'"):
        split_sizes("coco", "dscmr")
