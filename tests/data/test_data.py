"""cmh/data/prepare.py (raw and lists input, the CLI via data.main) and data.py (the prepared folder,
the Dataset and loader)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import (
    LABEL_NAMES,
    annotation_bytes,
    item_ids,
    jpeg_bytes,
    list_line,
    make_raw_layout,
    make_tokenizer,
    write,
)
from PIL import Image

import data
from cmh.data import prepare as prepare
from cmh.utils.errors import UserError

SMALL = ["--n-query", "5", "--n-train", "20", "--n-val", "5"]
# the real metadata, beside the checkout (../shared) or where IAPR_TC12_META points
META = Path(
    os.environ.get("IAPR_TC12_META", Path(__file__).resolve().parents[3] / "shared/iapr-tc12-meta")
)


def run_prepare(tmp_path: Path, *extra: str, out: str = "prep", layout: bool = True) -> int:
    """data.main(["prepare", raw roots of tmp_path/raw, --out tmp_path/out, *extra])."""
    if layout and not (tmp_path / "raw").exists():
        make_raw_layout(tmp_path / "raw")
    argv = ["prepare", "--iapr-root", str(tmp_path / "raw/iaprtc12"), "--saiapr-root",
            str(tmp_path / "raw/saiapr_tc-12"), "--out", str(tmp_path / out), *extra]  # fmt: skip
    return data.main(argv)


def raw_path(tmp_path: Path, item_id: int, kind: str) -> Path:
    """Path of an item's annotation ("eng") or image ("jpg") in the fixture layout."""
    sub = "annotations_complete_eng" if kind == "eng" else "images"
    return tmp_path / "raw/iaprtc12" / sub / f"{item_id // 1000:02d}" / f"{item_id}.{kind}"


def assert_error(tmp_path: Path, capsys, *extra: str, match: str, out: str = "prep") -> None:
    """prepare returns 2, prints ``error: ...`` containing ``match``, writes no summary.json."""
    assert run_prepare(tmp_path, *extra, out=out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err, err
    assert not (tmp_path / out / "summary.json").exists()


@pytest.fixture
def prepared(tmp_path: Path) -> data.PreparedData:
    assert run_prepare(tmp_path, *SMALL) == 0
    return data.load_prepared(tmp_path / "prep")


# =========================================================================== raw prepare
def test_raw_prepare_writes_the_contract(tmp_path: Path, capsys) -> None:
    assert run_prepare(tmp_path, *SMALL) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "prep"
    assert sorted(p.name for p in out.iterdir() if p.name != ".writer.lock") == [
        "labels.txt", "manifest.jsonl", "splits.json", "summary.json", "vocab.txt"]  # fmt: skip
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == item_ids(40)
    assert all(set(x) == {"id", "image", "caption", "labels"} for x in lines)
    first = lines[0]
    assert (out / first["image"]).resolve() == raw_path(tmp_path, 25, "jpg").resolve()
    assert not Path(first["image"]).is_absolute()
    assert first["caption"].endswith("; the sky in the background;")  # whitespace normalised
    # label columns: the SAIAPR ids that occur, ascending; the unused wlist id is not a column
    names = (out / "labels.txt").read_text().splitlines()
    assert names == [LABEL_NAMES[i] for i in sorted(LABEL_NAMES)]
    segments = (tmp_path / "raw/saiapr_tc-12/00/labels.txt").read_text().split("\n")
    first_ids = sorted({int(s.split()[2]) for s in segments if s.startswith("25 ")})
    assert first["labels"] == [sorted(LABEL_NAMES).index(i) for i in first_ids]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 40 and summary["labels"] == 6
    assert summary["splits"] == {"query": 5, "database": 35, "train": 20, "val": 5}
    assert summary["dropped"] == [] and summary["dropped_counts"] == {}
    assert 0 < summary["chance_map"]["query_database"] <= 1
    assert "prepared 40 items" in printed and "chance level" in printed


def test_label_columns_when_an_unused_label_sits_in_the_middle(tmp_path: Path) -> None:
    """SAIAPR id 11 ("man", the third of six) used by no item: the columns are the other five in
    id order, and every item's labels point at its own names."""
    make_raw_layout(tmp_path / "raw")
    saiapr = tmp_path / "raw/saiapr_tc-12"
    named = {}  # item id -> its label names, from the raw segments that remain
    for labels in saiapr.glob("*/labels.txt"):
        rows = [r for r in labels.read_text().splitlines() if r.split()[2] != "11"]
        labels.write_text("\n".join(rows) + "\n")
        for r in rows:
            item, _, label = r.split()
            named.setdefault(int(item), set()).add(LABEL_NAMES[int(label)])
    assert run_prepare(tmp_path, *SMALL) == 0
    out = tmp_path / "prep"
    names = (out / "labels.txt").read_text().splitlines()
    assert names == ["sky-blue", "tree", "woman", "house", "car"]
    for line in (out / "manifest.jsonl").read_text().splitlines():
        item = json.loads(line)
        assert {names[c] for c in item["labels"]} == named[item["id"]]


def test_prepared_data_api(prepared: data.PreparedData) -> None:
    ids = prepared.splits["query"]
    matrix = prepared.label_matrix(ids[::-1])
    assert matrix.shape == (5, 6) and matrix.dtype == np.float32
    row = prepared.items[prepared.index_of()[ids[-1]]]
    assert matrix[0].nonzero()[0].tolist() == row["labels"]
    assert prepared.captions(ids[:1]) == [prepared.items[prepared.index_of()[ids[0]]]["caption"]]
    vocab = (prepared.root / "vocab.txt").read_text().splitlines()
    assert prepared.bow_dim() == len(vocab) == len(prepared.vocab) > 0
    with pytest.raises(UserError, match="item id 999999 is not in"):
        prepared.label_matrix([999999])


def splits_of(tmp_path: Path, seed: int, out: str) -> dict:
    assert run_prepare(tmp_path, *SMALL, "--seed", str(seed), out=out) == 0
    return json.loads((tmp_path / out / "splits.json").read_text())


def test_split_properties_and_determinism(tmp_path: Path) -> None:
    a, again, other = (splits_of(tmp_path, s, o) for s, o in ((3, "a"), (3, "b"), (4, "c")))
    assert a == again and a != other
    query, database, train, val = (set(a[k]) for k in ("query", "database", "train", "val"))
    assert not query & database and not query & train and not train & val
    assert train <= database and val <= database
    assert len(query | database) == 40 and (len(train), len(val)) == (20, 5)
    assert all(a[k] == sorted(a[k]) for k in a)


@pytest.mark.parametrize(("extra", "match"), [
    (["--n-query", "40", "--n-train", "0", "--n-val", "0"], "--n-query 40 is larger than the 39"),
    (["--n-query", "5", "--n-train", "36"], "--n-train 36 is larger than the 35 database"),
    (["--n-query", "5", "--n-train", "30", "--n-val", "6"], "--n-val 6 is larger than the 5"),
    (["--n-query", "-1"], "--n-query must be >= 0, got -1"),
])  # fmt: skip
def test_split_sizes_larger_than_data(tmp_path: Path, capsys, extra: list, match: str) -> None:
    assert_error(tmp_path, capsys, *extra, match=match)


# =========================================================================== drops
def test_drops_are_counted_and_listed(tmp_path: Path, capsys) -> None:
    make_raw_layout(tmp_path / "raw")
    ids = item_ids(40)
    write(raw_path(tmp_path, ids[1], "eng"), annotation_bytes(ids[1], "   "))
    raw_path(tmp_path, ids[2], "jpg").unlink()
    write(raw_path(tmp_path, ids[3], "jpg"), b"not a jpeg")
    labels = tmp_path / "raw/saiapr_tc-12/00/labels.txt"
    labels.write_text("".join(x + "\n" for x in labels.read_text().split("\n")
                              if x and not x.startswith(f"{ids[0]} ")))  # fmt: skip
    # labels without an annotation: not an item at all
    with labels.open("a") as handle:
        handle.write("777 1 7\n")
    assert run_prepare(tmp_path, *SMALL) == 0
    summary = json.loads((tmp_path / "prep/summary.json").read_text())
    assert summary["items"] == 36
    assert summary["dropped"] == [
        {"id": ids[0], "reason": "no labels"},
        {"id": ids[1], "reason": "no caption"},
        {"id": ids[2], "reason": "missing image"},
        {"id": ids[3], "reason": "unreadable image"},
    ]
    assert summary["dropped_counts"] == {"missing image": 1, "no caption": 1, "no labels": 1,
                                         "unreadable image": 1}  # fmt: skip
    assert "dropped 4 item(s)" in capsys.readouterr().out
    split_ids = set(sum(json.loads((tmp_path / "prep/splits.json").read_text()).values(), []))
    assert not split_ids & {ids[0], ids[1], ids[2], ids[3], 777}
    # --strict: the first drop is an error; --no-check-images keeps the unreadable image
    assert_error(tmp_path, capsys, *SMALL, "--strict", match=f"item {ids[0]}: no labels", out="s")
    assert run_prepare(tmp_path, *SMALL, "--no-check-images", out="n") == 0
    assert json.loads((tmp_path / "n/summary.json").read_text())["items"] == 37


def test_grayscale_and_cmyk_are_kept_and_loaded_as_rgb(tmp_path: Path) -> None:
    make_raw_layout(tmp_path / "raw")
    ids = item_ids(40)
    write(raw_path(tmp_path, ids[0], "jpg"), jpeg_bytes(12, "L"))
    write(raw_path(tmp_path, ids[1], "jpg"), jpeg_bytes(12, "CMYK"))
    assert run_prepare(tmp_path, "--n-query", "2", "--n-train", "30", "--n-val", "2") == 0
    prepared = data.load_prepared(tmp_path / "prep")
    assert prepared.index_of().keys() >= {ids[0], ids[1]}
    for item_id in ids[:2]:
        image = data.load_image(raw_path(tmp_path, item_id, "jpg"), item_id)
        assert image.mode == "RGB" and image.size == (12, 12)
    prepared.splits["query"] = ids[:2]
    dataset = data.HashingDataset(prepared, "query", image_size=16)
    assert [dataset[i]["image"].shape for i in range(2)] == [torch.Size([3, 16, 16])] * 2


# =========================================================================== bad input
def test_bad_roots(tmp_path: Path, capsys) -> None:
    make_raw_layout(tmp_path / "raw")
    argv = ["prepare", "--iapr-root", str(tmp_path / "nope"), "--saiapr-root",
            str(tmp_path / "raw/saiapr_tc-12"), "--out", str(tmp_path / "o")]  # fmt: skip
    assert data.main(argv) == 2
    assert "--iapr-root" in capsys.readouterr().err
    (tmp_path / "raw/iaprtc12/images").rename(tmp_path / "raw/iaprtc12/pictures")
    assert_error(tmp_path, capsys, match="missing sub-folder(s) images")
    (tmp_path / "raw/iaprtc12/pictures").rename(tmp_path / "raw/iaprtc12/images")
    (tmp_path / "raw/saiapr_tc-12/wlist.txt").unlink()
    assert_error(tmp_path, capsys, match="wlist.txt not found (set --saiapr-wlist PATH)")
    assert data.main(["prepare", "--out", str(tmp_path / "o")]) == 2
    assert "give the input to prepare: --twemoji (twemoji) or --mat (mat) or --iapr-root (raw)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(("case", "match"), [
    ("no-description", "{eng}: no <DESCRIPTION> tag"),
    ("unclosed", "{eng}:4: <DESCRIPTION> opened here has no closing"),
    ("labels-line", "{labels}:2: expected 3 integer fields 'image_id segment_id label_id'"),
    ("label-id", "{labels}:3: label id 55 is not in the label dictionary"),
])  # fmt: skip
def test_bad_files(tmp_path: Path, capsys, case: str, match: str) -> None:
    make_raw_layout(tmp_path / "raw")
    eng = raw_path(tmp_path, 398, "eng")
    labels = tmp_path / "raw/saiapr_tc-12/00/labels.txt"
    lines = labels.read_text().splitlines()
    if case == "no-description":
        eng.write_bytes(annotation_bytes(398, None))
    elif case == "unclosed":
        eng.write_bytes(eng.read_bytes().replace(b"</DESCRIPTION>", b""))
    elif case == "labels-line":
        labels.write_text("\n".join([lines[0], "25 1", *lines[1:]]))
    else:
        labels.write_text("\n".join([*lines[:2], "25 9 55", *lines[2:]]))
    assert_error(tmp_path, capsys, *SMALL, match=match.format(eng=eng, labels=labels))


def test_existing_prepared_output_refused_unless_overwrite(tmp_path: Path, capsys) -> None:
    assert run_prepare(tmp_path, *SMALL) == 0
    assert run_prepare(tmp_path, *SMALL) == 2
    assert "already holds a prepared dataset; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "prep/summary.json").exists()  # the old dataset is untouched
    assert run_prepare(tmp_path, *SMALL, "--seed", "1", "--overwrite") == 0
    assert data.load_prepared(tmp_path / "prep").splits != {}


# =========================================================================== atomic output
def test_failure_mid_write_leaves_no_summary(tmp_path: Path, monkeypatch) -> None:
    written = []

    def failing_write(path: Path, text: str) -> None:
        if len(written) == 2:
            raise OSError("disk full")
        written.append(path.name)
        path.write_text(text)

    monkeypatch.setattr(prepare, "_write_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        run_prepare(tmp_path, *SMALL)
    out = tmp_path / "prep"
    assert written == ["manifest.jsonl", "labels.txt"]
    assert not out.exists()  # the folder this prepare made, taken back with what it wrote
    with pytest.raises(UserError, match="no such folder; prepare a dataset there first"):
        data.load_prepared(out)


def test_failure_while_replacing_unmarks_the_old_dataset(tmp_path: Path, monkeypatch) -> None:
    assert run_prepare(tmp_path, *SMALL) == 0
    real_replace, moved = os.replace, []

    def failing_replace(src, dst) -> None:
        if len(moved) == 2:
            raise OSError("crash")
        moved.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(prepare.os, "replace", failing_replace)
    with pytest.raises(OSError, match="crash"):
        run_prepare(tmp_path, *SMALL, "--seed", "2", "--overwrite")
    assert moved == ["manifest.jsonl", "labels.txt"]
    assert not (tmp_path / "prep/summary.json").exists()
    assert not list(tmp_path.glob("prep/.tmp-prepare-*"))


def test_load_prepared_errors(tmp_path: Path, prepared: data.PreparedData) -> None:
    with pytest.raises(UserError) as info:
        data.load_prepared(tmp_path / "raw")
    assert str(info.value) == (
        f"{tmp_path / 'raw'} is not a prepared dataset (no summary.json); "
        "run `python data.py prepare ...` first"
    )
    splits_file = prepared.root / "splits.json"
    splits = json.loads(splits_file.read_text())
    splits["val"].append(123456)
    splits_file.write_text(json.dumps(splits))
    with pytest.raises(UserError, match="splits.json: val holds id 123456"):
        data.load_prepared(prepared.root)
    (prepared.root / "manifest.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(UserError, match=r"manifest.jsonl:1: bad manifest line"):
        data.load_prepared(prepared.root)


# =========================================================================== the split's protocol
def _break_split(root: Path, change) -> str:
    """Apply ``change(splits)`` to root/splits.json; the message load_prepared refuses it with.
    The file is restored afterwards (and the restored folder loads again)."""
    path = root / "splits.json"
    original = path.read_text()
    splits = json.loads(original)
    change(splits)
    path.write_text(json.dumps(splits))
    with pytest.raises(UserError) as info:
        data.load_prepared(root)
    path.write_text(original)
    data.load_prepared(root)
    return str(info.value)


def _move(splits: dict, source: str, target: str, index: int = 0) -> int:
    """Add the ``index``-th id of ``source`` to ``target``; returns it."""
    item = splits[source][index]
    splits[target].append(item)
    return item


@pytest.mark.parametrize(
    "source, target, words",
    [
        ("query", "train", "is in both query and train; they must be disjoint"),
        ("query", "val", "is in both query and val; they must be disjoint"),
        ("query", "database", "is in both query and database; they must be disjoint"),
        ("val", "train", "is in both train and val; they must be disjoint"),
    ],
)
def test_a_split_that_leaks_is_refused(
    prepared: data.PreparedData, source: str, target: str, words: str
) -> None:
    moved = {}
    message = _break_split(
        prepared.root, lambda s: moved.setdefault("id", _move(s, source, target))
    )
    assert message == f"{prepared.root / 'splits.json'}: id {moved['id']} {words}"


@pytest.mark.parametrize("name", ["train", "val"])
def test_training_and_validation_items_must_be_database_items(
    prepared: data.PreparedData, name: str
) -> None:
    def drop_from_database(splits: dict) -> None:
        splits["database"].remove(splits[name][1])

    item = json.loads((prepared.root / "splits.json").read_text())[name][1]
    message = _break_split(prepared.root, drop_from_database)
    assert message == (
        f"{prepared.root / 'splits.json'}: id {item} is in {name} but not in database; "
        f"every {name} item must be a database item"
    )


def test_split_ids_must_be_unique_known_integers(prepared: data.PreparedData) -> None:
    root = prepared.root
    message = _break_split(root, lambda s: s["train"].append(s["train"][0]))
    assert message.endswith(f"train holds id {prepared.splits['train'][0]} twice")
    message = _break_split(root, lambda s: s["val"].append(987654))
    assert message.endswith("val holds id 987654, which is not in manifest.jsonl")
    assert "list of integer item ids" in _break_split(root, lambda s: s.update(query="all"))


def test_train_refuses_a_leaking_split(prepared: data.PreparedData, tmp_path: Path, capsys):
    """A query added to train (751 training items instead of 750) stops train.py at once."""
    import train

    splits = json.loads((prepared.root / "splits.json").read_text())
    splits["train"].append(splits["query"][0])
    (prepared.root / "splits.json").write_text(json.dumps(splits))
    argv = ["--data", str(prepared.root), "--out", str(tmp_path / "run"), "--epochs", "1"]
    argv += ["--image-weights", "none", "--text-model", "tiny"]  # offline: no pretrained model
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert f"id {splits['query'][0]} is in both query and train" in err
    assert not (tmp_path / "run" / "last.pt").exists()


# =========================================================================== lists input
def make_lists(root: Path) -> list[str]:
    """Lists with 4 bow columns and 3 label bits: 4 query, 8 database (4 train), 1 bad item."""
    ids = item_ids(13)
    bits = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]
    lines = {i: list_line(f"{i // 1000:02d}/{i}.jpg", [k % 3, 1, 0, 2], bits[k % 4])
             for k, i in enumerate(ids)}  # fmt: skip
    lines[ids[12]] = list_line(f"{ids[12] // 1000:02d}/{ids[12]}.jpg", [1, 0, 0, 0], [0, 0, 0])
    files = {"iapr_test": ids[:4], "iapr_retrieval": ids[4:], "iapr_train": ids[4:8]}
    for name, members in files.items():
        write(root / "lists" / name, "".join(lines[i] + "\n" for i in members).encode())
    for i in ids:
        write(root / "images" / f"{i // 1000:02d}" / f"{i}.jpg", jpeg_bytes())
        write(root / "ann" / f"{i // 1000:02d}" / f"{i}.eng", annotation_bytes(i, f"a dog {i}"))
    return ["prepare", "--lists", str(root / "lists"), "--images", str(root / "images"),
            "--annotations", str(root / "ann"), "--bow-columns", "4", "--label-columns", "3",
            "--n-val", "2", "--out", str(root / "out")]  # fmt: skip


def test_lists_prepare_keeps_split_and_bow(tmp_path: Path) -> None:
    argv = make_lists(tmp_path)
    assert data.main(argv) == 0
    prepared = data.load_prepared(tmp_path / "out")
    ids = item_ids(13)
    assert prepared.splits["query"] == ids[:4] and prepared.splits["train"] == ids[4:8]
    assert prepared.splits["database"] == ids[4:12]  # ids[12] dropped: no labels
    assert set(prepared.splits["val"]) <= set(ids[8:12]) and len(prepared.splits["val"]) == 2
    item = prepared.items[prepared.index_of()[ids[1]]]
    assert item["bow"] == {"indices": [0, 1, 3], "counts": [1, 1, 2]}
    assert prepared.label_names == ["label_000", "label_001", "label_002"]
    assert prepared.bow_dim() == 4
    dataset = data.HashingDataset(prepared, "query", bow=True, images=False)
    assert dataset[1]["bow"].tolist() == [1.0, 1.0, 0.0, 2.0]
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["dropped"] == [{"id": ids[12], "reason": "no labels"}]


def test_lists_errors(tmp_path: Path, capsys) -> None:
    argv = make_lists(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    assert data.main([*argv, "--label-names", str(names)]) == 2
    assert "expected 3 label names (one per line), found 2" in capsys.readouterr().err
    assert data.main([*argv, "--n-query", "3"]) == 2
    assert "do not go together" in capsys.readouterr().err
    test_file = tmp_path / "lists/iapr_test"
    test_file.write_text(test_file.read_text() + "00/1.jpg 1 2 3\n")
    assert data.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "iapr_test:5: expected 8 columns (image path, 4 bag-of-words counts, 3 label bits)" in err
    )
    assert not (tmp_path / "out/summary.json").exists()


# =========================================================================== Dataset, loader
class CountingTokenizer:
    """Forwards to a tokenizer and counts the calls."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def test_dataset_collate_and_loader(prepared: data.PreparedData) -> None:
    tokenizer = CountingTokenizer(make_tokenizer([x["caption"] for x in prepared.items]))
    dataset = data.HashingDataset(prepared, "train", tokenizer, max_length=9, image_size=16,
                                  train=True, bow=True)  # fmt: skip
    item = dataset[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["labels"].shape == (6,) and item["bow"].shape == (prepared.bow_dim(),)
    assert item["input_ids"].dtype == torch.long and len(item["input_ids"]) <= 9
    assert item["index"] == prepared.splits["train"][0]
    batches = [b for _ in range(2) for b in data.make_loader(dataset, 8, True, seed=5, pad_id=0)]
    assert tokenizer.calls == 1  # tokenized once, in __init__
    batch = batches[0]
    assert batch["image"].shape == (8, 3, 16, 16) and batch["labels"].shape == (8, 6)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["index"].dtype == torch.long and batch["index"].shape == (8,)
    again = [b["index"].tolist() for b in data.make_loader(dataset, 8, True, seed=5)]
    assert [b["index"].tolist() for b in batches[:3]] == again
    other = [b["index"].tolist() for b in data.make_loader(dataset, 8, True, seed=6)]
    assert other != again


def test_collate_pads_to_longest() -> None:
    items = [{"labels": torch.ones(2), "input_ids": torch.tensor([5, 6, 7]), "index": 3},
             {"labels": torch.zeros(2), "input_ids": torch.tensor([8]), "index": 9}]  # fmt: skip
    batch = data.collate(items, pad_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["index"].tolist() == [3, 9] and batch["labels"].shape == (2, 2)


def test_image_transform_shapes() -> None:
    image = Image.new("RGB", (40, 30), (255, 0, 0))
    for train in (True, False):
        tensor = data.image_transform(24, train)(image)
        assert tensor.shape == (3, 24, 24)
    red = data.image_transform(8, False)(image)[0, 0, 0].item()
    assert red == pytest.approx((1 - 0.485) / 0.229, rel=1e-4)


def test_unreadable_image_at_load_time_names_item(prepared: data.PreparedData) -> None:
    dataset = data.HashingDataset(prepared, "query", image_size=16)
    dataset.paths[0].write_bytes(b"broken")
    with pytest.raises(UserError, match=f"item {dataset.ids[0]}: cannot read image"):
        dataset[0]
    with pytest.raises(UserError, match="unknown split 'test'"):
        data.HashingDataset(prepared, "test")


# =========================================================================== demo, real layout
def test_demo_output_is_read_by_prepare(tmp_path: Path) -> None:
    assert data.main(["demo", "--out", str(tmp_path), "--n-items", "40", "--image-size", "16"]) == 0
    prepared = data.load_prepared(tmp_path / "prepared")
    sizes = {k: len(v) for k, v in prepared.splits.items()}
    assert sizes["query"] == 4 and sizes["train"] == 20 and sizes["val"] == 4
    assert len(prepared.items) + len(json.loads(
        (tmp_path / "prepared/summary.json").read_text())["dropped"]) == 40  # fmt: skip


def load_layout_script():
    path = Path(__file__).resolve().parents[2] / "scripts/layout_real_meta.py"
    spec = importlib.util.spec_from_file_location("layout_real_meta", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layout_script_on_a_small_meta(tmp_path: Path, capsys) -> None:
    meta = tmp_path / "meta"
    meta.mkdir()
    records = [(25, "a dog;\nthe  sky;", ["dog", "sky", "dog"]), (1026, "two men", ["man"]),
               (4092, None, ["sky"]), (2500, "a boat", ["boat", "sky"])]  # fmt: skip
    (meta / "items.jsonl").write_text("".join(json.dumps(
        {"id": i, "caption": c, "segment_labels": s}) + "\n" for i, c, s in records))  # fmt: skip
    (meta / "label_names.txt").write_text("boat\ndog\nman\nsky\nunused\n")
    assert load_layout_script().main(["--meta", str(meta), "--out", str(tmp_path / "l")]) == 0
    assert (tmp_path / "l/saiapr_tc-12/wlist.txt").read_text().startswith("1\tboat\n2\tdog\n")
    argv = ["prepare", "--iapr-root", str(tmp_path / "l/iaprtc12"), "--saiapr-root",
            str(tmp_path / "l/saiapr_tc-12"), "--out", str(tmp_path / "p"), "--n-query", "1",
            "--n-train", "1", "--n-val", "1"]  # fmt: skip
    assert data.main(argv) == 0
    prepared = data.load_prepared(tmp_path / "p")
    assert prepared.label_names == ["boat", "dog", "man", "sky"]
    assert [x["caption"] for x in prepared.items] == ["a dog; the sky;", "two men", "a boat"]
    assert prepared.items[0]["labels"] == [1, 3]
    assert "dropped 1 item(s): no caption: 1" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not (META / "items.jsonl").is_file(), reason="real metadata absent")
def test_real_metadata_layout_prepares(tmp_path: Path) -> None:
    assert load_layout_script().main(["--meta", str(META), "--out", str(tmp_path)]) == 0
    argv = ["prepare", "--iapr-root", str(tmp_path / "iaprtc12"), "--saiapr-root",
            str(tmp_path / "saiapr_tc-12"), "--out", str(tmp_path / "p")]  # fmt: skip
    assert data.main(argv) == 0
    summary = json.loads((tmp_path / "p/summary.json").read_text())
    assert (summary["items"], summary["labels"]) == (19995, 255)
    assert summary["splits"] == {"query": 2000, "database": 17995, "train": 10000, "val": 1000}
    assert summary["dropped"] == [{"id": 4092, "reason": "no caption"}]


def test_loader_with_workers_matches_single_process(prepared: data.PreparedData) -> None:
    dataset = data.HashingDataset(prepared, "train", image_size=16)
    single = [b["index"].tolist() for b in data.make_loader(dataset, 8, True, seed=1)]
    loader = data.make_loader(dataset, 8, True, seed=1, num_workers=2, drop_last=True)
    assert [b["index"].tolist() for b in loader] == single[:-1]  # 20 items: 2 full batches


def test_zero_queries_gives_no_chance_level(tmp_path: Path, capsys) -> None:
    assert run_prepare(tmp_path, "--n-query", "0", "--n-train", "20", "--n-val", "5") == 0
    summary = json.loads((tmp_path / "prep/summary.json").read_text())
    assert summary["splits"]["query"] == 0 and summary["chance_map"]["query_database"] is None
    assert "query->database n/a" in capsys.readouterr().out


# =========================================================================== one prepare step
def test_data_main_and_prepare_step_write_the_same_folder(tmp_path: Path) -> None:
    """data.main (the CLI) and cmh.data.prepare.prepare are one prepare step: same files."""
    assert run_prepare(tmp_path, *SMALL, "--seed", "7", out="via_data") == 0
    argv = ["prepare", "--iapr-root", str(tmp_path / "raw/iaprtc12"), "--saiapr-root",
            str(tmp_path / "raw/saiapr_tc-12"), "--out", str(tmp_path / "via_fn"), *SMALL,
            "--seed", "7"]  # fmt: skip
    summary = prepare.prepare(data.parse_args(argv))
    assert summary == json.loads((tmp_path / "via_fn/summary.json").read_text())
    for name in ("manifest.jsonl", "labels.txt", "splits.json", "vocab.txt"):
        texts = {(tmp_path / d / name).read_text() for d in ("via_data", "via_fn")}
        assert len(texts) == 1, name
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("via_data", "via_fn")]
    for d, s in zip(("via_data", "via_fn"), summaries, strict=True):
        assert s.pop("prepared_at") == str((tmp_path / d).resolve())  # where each was written
    assert summaries[0] == summaries[1]
    assert len(data.load_prepared(tmp_path / "via_fn").items) == 40
