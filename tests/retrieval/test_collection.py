"""The Python API (Hasher) and collections of your own: folders of images, files of captions,
`retrieve.py add`, MIH, and what a crash during `add` leaves.

The model is conftest's learned tiny run (both towers' codes diverse: learning.assert_diverse),
so equal codes and equal rankings between two paths compare learned codes, not constants.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import LEARN_BITS
from learning import assert_diverse
from PIL import Image

import retrieve
from cmh.evaluation.hamming_metrics import hamming_distance
from cmh.retrieval import Hasher, binary_index, index_folder, load_index
from cmh.retrieval.collection import read_captions
from cmh.utils.errors import UserError


@pytest.fixture(scope="module")
def model(learned_run, learn_prepared):
    from cmh.data.prepared_folder import load_prepared
    from cmh.evaluation.from_checkpoint import encode_splits, load_for_evaluation

    assert_diverse(learned_run)
    data = load_prepared(learn_prepared)
    loaded = load_for_evaluation(learned_run / "best.pt", learn_prepared, "cpu")
    db = encode_splits(loaded, ["database"])["database"]
    items = [data.items[r] for r in data.rows(db["ids"].tolist())]
    paths = [data.image_path(it).resolve() for it in items]
    return {"ckpt": learned_run / "best.pt", "db": db, "paths": paths,
            "captions": [it["caption"] for it in items], "data": learn_prepared}  # fmt: skip


@pytest.fixture(scope="module")
def collection(model, tmp_path_factory):
    """40 database images in two nested folders, one unreadable file, a caption file."""
    root = tmp_path_factory.mktemp("collection")
    for i, path in enumerate(model["paths"][:40]):
        dest = root / "photos" / ("beach" if i % 2 else "city") / f"{i:03d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    (root / "photos" / "city" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "photos" / "notes.txt").write_text("not an image")
    (root / "captions.txt").write_text("\n".join(model["captions"][:30]) + "\n\n")
    return root


def unpack(packed: np.ndarray) -> np.ndarray:
    """Packed codes (whole bytes of bits) -> ±1."""
    return np.unpackbits(packed, axis=1).astype(np.int8) * 2 - 1


def last_two(path: str) -> str:
    """beach/001.jpg of /any/root/beach/001.jpg: the same image in two copies of a folder."""
    return "/".join(Path(path).parts[-2:])


def ids_and_paths(root: Path):
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.jpg") if p.name != "broken.jpg")


@pytest.mark.compares
def test_hasher_codes_equal_evaluate_for_paths_pil_and_arrays(model):
    hasher = Hasher.load(model["ckpt"], device="cpu")
    db = model["db"]
    assert np.array_equal(hasher.encode_images(model["paths"]), binary_index.pack_codes(db["image"]))
    assert np.array_equal(hasher.encode_texts(model["captions"]), binary_index.pack_codes(db["text"]))
    some = model["paths"][:5]
    pils = [Image.open(p) for p in some]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in some]
    want = binary_index.pack_codes(db["image"][:5])
    assert np.array_equal(hasher.encode_images(pils, batch_size=2), want)
    assert np.array_equal(hasher.encode_images(arrays, batch_size=3), want)
    assert hasher.bits == LEARN_BITS and hasher.modalities == ("image", "text")


def test_hasher_refuses_what_it_cannot_read(model, tmp_path):
    hasher = Hasher.load(model["ckpt"], device="cpu")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match=f"{bad}: cannot read the image"):
        hasher.encode_images([model["paths"][0], bad])
    with pytest.raises(UserError, match="an array image must be uint8"):
        hasher.encode_images([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(UserError, match="encode_texts takes strings"):
        hasher.encode_texts([3])
    with pytest.raises(UserError, match="missing.pt does not exist"):
        Hasher.load(tmp_path / "missing.pt")


@pytest.mark.compares
def test_folder_and_caption_file_index(model, collection, tmp_path, capsys):
    out = tmp_path / "index"
    argv = ["index", "--checkpoint", str(model["ckpt"]), "--out", str(out),
            "--images", str(collection / "photos"), "--texts", str(collection / "captions.txt")]  # fmt: skip
    assert retrieve.main(argv) == 0
    err = capsys.readouterr().err
    assert f"skipped unreadable image {collection / 'photos/city/broken.jpg'}" in err
    assert "encoded 40 images, 30 captions; 1 unreadable images skipped" in err
    index = load_index(out)
    found = ids_and_paths(collection / "photos")
    assert index.items["ids"][:40] == [key for key, _ in found]
    assert index.items["ids"][40:] == [f"captions.txt:{n}" for n in range(1, 31)]
    assert index.items["labels"] == [None] * 70 and index.meta["counts"] == {"image": 40, "text": 30}
    hasher = Hasher.load(model["ckpt"], device="cpu")
    assert np.array_equal(index.codes["image"], hasher.encode_images([p for _, p in found]))
    assert np.array_equal(index.codes["text"], hasher.encode_texts(model["captions"][:30]))
    # a text query ranks the image codes by Hamming distance, ties by position
    capsys.readouterr()
    assert retrieve.main(["query", "--index", str(out), "--text", model["captions"][3], "--k", "8"]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines()[2:] if line[:1] == " "]
    dist = hamming_distance(unpack(hasher.encode_texts([model["captions"][3]])), unpack(index.codes["image"]))[0]
    order = np.argsort(dist, kind="stable")[:8]
    assert [(r[1], int(r[2])) for r in printed] == [(index.items["ids"][i], int(dist[i])) for i in order]


def test_strict_refuses_the_unreadable_image(model, collection, tmp_path, capsys):
    argv = ["index", "--checkpoint", str(model["ckpt"]), "--out", str(tmp_path / "i"),
            "--images", str(collection / "photos"), "--strict"]  # fmt: skip
    assert retrieve.main(argv) == 2
    err = capsys.readouterr().err
    assert "broken.jpg: cannot read the image" in err and "--strict" in err
    assert not (tmp_path / "i" / "meta.json").exists()


def test_jsonl_captions_pair_with_images_by_id(model, collection, tmp_path):
    found = ids_and_paths(collection / "photos")
    lines = [{"id": found[0][0], "text": "my own words"}, {"id": "loose", "text": "no image"}]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in lines))
    argv = ["index", "--checkpoint", str(model["ckpt"]), "--out", str(tmp_path / "i"),
            "--images", str(collection / "photos"), "--texts", str(jsonl)]  # fmt: skip
    assert retrieve.main(argv) == 0
    index = load_index(tmp_path / "i")
    assert index.items["captions"][0] == "my own words" and index.items["ids"][-1] == "loose"
    assert index.rows["text"].tolist() == [0, 40] and index.code_of(0, "text") is not None


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"id": 1, "text": "a"}\nnot json\n', "line 2: not JSON"),
        ('{"id": 1}\n', 'line 1: expected {"id": ..., "text": "..."}'),
        ('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', "line 2: id '1' again (first on line 1)"),
        ("\n\n", "no caption in it"),
    ],
)
def test_caption_file_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / ("c.jsonl" if "{" in text else "c.txt")
    path.write_text(text)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}")):
        read_captions(path)


def ranking(index_dir: Path, text: str, k: int = 10) -> list[tuple[str, int]]:
    """(image path, distance) of the top k of a text query, read through the API."""
    from cmh.retrieval import Searcher

    index = load_index(index_dir)
    _, rows = Searcher(index, device="cpu").by_text(text, k)
    return [(r["image"], r["distance"]) for r in rows]


@pytest.mark.compares
@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_add_equals_indexing_everything_at_once(model, collection, tmp_path, capsys, kind):
    photos, ck = collection / "photos", str(model["ckpt"])
    grown = tmp_path / "grown"
    shutil.copytree(photos / "city", grown / "city")
    once, later = tmp_path / "once", tmp_path / "later"
    assert retrieve.main(["index", "--checkpoint", ck, "--out", str(once), "--images", str(photos),
                          "--kind", kind]) == 0  # fmt: skip
    # the same images, the folder growing: city first, then beach added (only the new ones encoded)
    assert retrieve.main(["index", "--checkpoint", ck, "--out", str(later), "--images", str(grown),
                          "--kind", kind]) == 0  # fmt: skip
    shutil.copytree(photos / "beach", grown / "beach")
    capsys.readouterr()
    assert retrieve.main(["add", "--index", str(later), "--images", str(grown)]) == 0
    out = capsys.readouterr()
    assert "encoded 20 images; 1 unreadable" in out.err and "now holds 40 items" in out.out
    a, b = load_index(once), load_index(later)
    code_of = {}  # image (its folder and name) -> its code, each index read through its rows
    for index in (a, b):
        paths = [last_two(index.items["images"][r]) for r in index.rows["image"]]
        codes = dict(zip(paths, map(tuple, index.codes["image"]), strict=True))
        assert len(codes) == 40 and code_of.setdefault("once", codes) == codes
    assert b.meta["params"] == a.meta["params"] and b.meta["generation"] == 2
    hasher = Hasher.load(model["ckpt"], device="cpu")
    for caption in model["captions"][:5]:
        got, want = ranking(later, caption, 10), ranking(once, caption, 10)
        assert sorted(d for _, d in got) == sorted(d for _, d in want)  # positions differ, distances not
        query = unpack(hasher.encode_texts([caption]))
        for path, d in got:  # each item shown at its own code's distance
            code = np.array([code_of["once"][last_two(path)]], np.uint8)
            assert hamming_distance(query, unpack(code))[0, 0] == d
    assert retrieve.main(["add", "--index", str(later), "--images", str(grown)]) == 0
    assert "nothing new" in capsys.readouterr().err


def test_add_refusals(model, collection, tmp_path, capsys, learned_run):
    ck, photos = str(model["ckpt"]), collection / "photos"
    split_index = tmp_path / "split"
    assert retrieve.main(["index", "--checkpoint", ck, "--out", str(split_index)]) == 0
    capsys.readouterr()
    assert retrieve.main(["add", "--index", str(split_index), "--images", str(photos)]) == 2
    assert "add works on a collection's index" in capsys.readouterr().err
    col = tmp_path / "col"
    assert retrieve.main(["index", "--checkpoint", ck, "--out", str(col), "--images", str(photos / "city")]) == 0
    other = tmp_path / "other"
    shutil.copytree(photos / "beach", other)
    (other / "001.jpg").rename(other / "000.jpg")  # the id 000.jpg, another file
    capsys.readouterr()
    assert retrieve.main(["add", "--index", str(col), "--images", str(other)]) == 2
    assert "image id '000.jpg' is already in the index" in capsys.readouterr().err
    assert retrieve.main(["add", "--index", str(col)]) == 2
    assert "add what? give --images DIR and / or --texts FILE" in capsys.readouterr().err
    argv = ["index", "--checkpoint", ck, "--out", str(tmp_path / "x"), "--images", str(photos), "--split", "query"]
    assert retrieve.main(argv) == 2
    assert "--split query picks a split of a prepared dataset" in capsys.readouterr().err


def test_a_crash_during_add_leaves_the_last_index(model, collection, tmp_path, capsys, monkeypatch):
    photos, col = collection / "photos", tmp_path / "col"
    grown = tmp_path / "grown"
    shutil.copytree(photos / "city", grown / "city")
    assert retrieve.main(["index", "--checkpoint", str(model["ckpt"]), "--out", str(col),
                          "--images", str(grown)]) == 0  # fmt: skip
    before = load_index(col)
    shutil.copytree(photos / "beach", grown / "beach")
    real = index_folder.write_text_atomic

    def die_at_meta(path, text):  # the data files of generation 2 are written; then the crash
        if Path(path).name == "meta.json":
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(index_folder, "write_text_atomic", die_at_meta)
    with pytest.raises(KeyboardInterrupt):
        retrieve.main(["add", "--index", str(col), "--images", str(grown)])
    monkeypatch.undo()
    assert (col / "codes.2.npz").is_file()  # the interrupted generation's leftovers
    after = load_index(col)
    assert after.items == before.items and np.array_equal(after.codes["image"], before.codes["image"])
    assert retrieve.main(["add", "--index", str(col), "--images", str(grown)]) == 0
    names = sorted(p.name for p in col.iterdir() if p.name[0] != ".")
    assert names == ["codes.2.npz", "image.2.faiss", "items.2.json", "meta.json"]  # leftovers replaced
    assert load_index(col).meta["n_items"] == 40


def test_mih_parameters_are_chosen_and_said(model, collection, tmp_path, capsys):
    out = tmp_path / "mih"
    argv = ["index", "--checkpoint", str(model["ckpt"]), "--out", str(out),
            "--images", str(collection / "photos"), "--kind", "mih"]  # fmt: skip
    assert retrieve.main(argv) == 0
    nhash, b = binary_index.mih_split(40, LEARN_BITS)
    assert (nhash, b) == (LEARN_BITS // 8, 8)  # b = log2(40) rounded, at least 8
    assert f"({LEARN_BITS} bits, mih nhash={nhash} b=8 nflip=1, image)" in capsys.readouterr().out
    assert load_index(out).meta["params"] == {"nhash": nhash, "b": 8, "nflip": 1}
    assert binary_index.mih_split(10_000_000, 64) == (2, 23)
    assert binary_index.mih_split(1_000_000, 64) == (3, 20)
    with pytest.raises(UserError, match="must fit in the 16-bit codes"):
        binary_index.choose_params("mih", 40, 16, {"nhash": 3, "b": 8})


def test_mih_search_finds_the_exact_neighbours_of_clustered_codes():
    """Codes near a few centres (a few bits flipped), as learned codes cluster: MIH with one
    flip per substring returns the exact top 10 (distances equal to the flat index's)."""
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 2, (30, 64))
    flips = rng.random((5000, 64)) < 0.05
    db = np.where(centres[rng.integers(0, 30, 5000)] ^ flips, 1, -1)
    q = np.where(centres[rng.integers(0, 30, 50)] ^ (rng.random((50, 64)) < 0.05), 1, -1)
    packed, pq = binary_index.pack_codes(db), binary_index.pack_codes(q)
    exact, _ = binary_index.search(binary_index.build_index(packed, "flat"), pq, 10)
    mih = binary_index.build_index(packed, "mih", {"nflip": 1})
    got, pos = binary_index.search(mih, pq, 10)
    assert (got <= exact[:, -1:]).mean() >= 0.99
    assert np.array_equal(got, np.take_along_axis(hamming_distance(q, db), pos, axis=1))


@pytest.mark.compares
def test_the_api_builds_saves_loads_and_searches(model, collection, tmp_path):
    """index_collection / add_to_index / load_index / Index.search: what retrieve.py runs."""
    from cmh.retrieval import add_to_index, index_collection

    hasher = Hasher.load(model["ckpt"], device="cpu")
    photos, out, said = collection / "photos", tmp_path / "api", []
    meta = index_collection(hasher, out, images=photos / "city", kind="ivf", params={"nlist": 2}, say=said.append)
    assert meta["kind"] == "ivf" and meta["params"] == {"nlist": 2, "nprobe": 16}
    meta = add_to_index(hasher, out, images=photos / "beach", texts=collection / "captions.txt", say=said.append)
    assert meta["counts"] == {"image": 40, "text": 30} and "encoded 20 images, 30 captions" in said[-1]
    index = load_index(out)
    query = hasher.encode_texts([model["captions"][0]])
    dist, rows = index.search("image", query, k=40)  # nprobe 16 >= nlist: every list, exact
    want = hamming_distance(unpack(query), unpack(index.codes["image"]))[0]
    assert sorted(dist[0].tolist()) == sorted(want.tolist())
    for d, r in zip(dist[0], rows[0], strict=True):
        position = int(np.flatnonzero(index.rows["image"] == r)[0])
        assert want[position] == d and index.items["images"][r] is not None


def test_add_refuses_another_model_and_a_folder_changed_meanwhile(model, collection, tmp_path):
    import torch

    from cmh.retrieval import add_to_index, index_collection
    from cmh.retrieval.index_folder import append_items, modality_params

    photos, out = collection / "photos", tmp_path / "col"
    hasher = Hasher.load(model["ckpt"], device="cpu")
    index_collection(hasher, out, images=photos / "city", say=lambda _: None)
    state = torch.load(model["ckpt"], weights_only=False)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1
    torch.save(state, tmp_path / "other.pt")
    other = Hasher.load(tmp_path / "other.pt", device="cpu")
    with pytest.raises(UserError, match="makes other codes: add with the index's model"):
        add_to_index(other, out, images=photos / "beach", say=lambda _: None)
    meta = load_index(out).meta
    with pytest.raises(UserError, match="changed while the new items were encoded"):
        append_items(out, {"ids": [], "captions": [], "images": [], "labels": []}, {}, {},
                     read={**meta, "generation": meta["generation"] - 1})  # fmt: skip
    # a chosen IVF nlist that a small modality cannot fill is chosen again for it; a given one is kept
    ivf = {"kind": "ivf", "params": {"nlist": 100, "nprobe": 16}}
    assert modality_params(ivf, 50)["nlist"] == binary_index.auto_nlist(50)
    assert modality_params({**ivf, "given": {"nlist": 100}}, 50)["nlist"] == 100


def test_a_reader_whose_files_were_replaced_is_told_to_run_again(model, collection, tmp_path):
    out = tmp_path / "col"
    assert retrieve.main(["index", "--checkpoint", str(model["ckpt"]), "--out", str(out),
                          "--images", str(collection / "photos" / "city")]) == 0  # fmt: skip
    (out / "image.1.faiss").unlink()  # as a commit between reading meta.json and the data
    with pytest.raises(UserError, match="image.1.faiss is gone: the index changed while it was read"):
        load_index(out)
