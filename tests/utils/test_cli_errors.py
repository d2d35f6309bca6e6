"""Refused command-line input not covered elsewhere: each refusal exits with status 2 and prints
`error: ...` naming the flag or file (the full list, with its tests, is docs/errors.md)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_FLAGS
from data_fixtures import annotation_bytes, item_ids, jpeg_bytes, list_line, write

import data
import evaluate
import train


def main_of(module, argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of `module.main(argv)`."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = module.main(argv)
    return code, err.getvalue()


# =========================================================================== train.py
@pytest.mark.parametrize(
    "flag, value, rule",
    [
        ("--epochs", "0", ">= 1"),
        ("--lr", "0", "> 0"),
        ("--eval-every", "0", ">= 1"),
        ("--max-length", "1", ">= 2"),
        ("--image-size", "8", ">= 16"),
        ("--num-workers", "-1", ">= 0"),
    ],
)
def test_train_refuses_bad_numbers(tiny_prepared, tmp_path, flag, value, rule):
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *TINY_FLAGS, flag, value]
    code, err = main_of(train, argv)
    assert code == 2 and err.startswith(f"error: {flag} must be ") and rule in err
    assert f"got {float(value) if flag == '--lr' else value}" in err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_train_needs_data(tmp_path):
    code, err = main_of(train, ["--out", str(tmp_path / "r"), *TINY_FLAGS])
    assert code == 2 and "give --data DIR (a prepared dataset) or --demo" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
@pytest.mark.parametrize("program", ["train", "evaluate"])
def test_device_cuda_without_a_gpu(tiny_prepared, tmp_path, program):
    from cmh.runs.checkpoints import save_checkpoint

    if program == "train":
        argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), *TINY_FLAGS]
        code, err = main_of(train, [*argv, "--device", "cuda"])
    else:  # the device is resolved before the model is built: an empty state dict will do
        state = {"model": {}, "model_config": {}, "args": {"data": str(tiny_prepared)}}
        save_checkpoint(state, tmp_path / "c.pt")
        code, err = main_of(evaluate, ["--checkpoint", str(tmp_path / "c.pt"), "--device", "cuda"])
    assert code == 2 and "--device cuda: no CUDA device is available" in err


def test_train_split_too_small(tiny_prepared, tmp_path):
    copy = tmp_path / "prepared"
    shutil.copytree(tiny_prepared, copy)
    splits = json.loads((copy / "splits.json").read_text())
    splits["train"] = splits["train"][:1]
    (copy / "splits.json").write_text(json.dumps(splits))
    argv = ["--data", str(copy), "--out", str(tmp_path / "r"), *TINY_FLAGS, "--epochs", "1"]
    code, err = main_of(train, argv)
    assert code == 2 and "the 'train' split has 1 item(s); training needs at least 2" in err


# =========================================================================== evaluate.py
def test_evaluate_needs_data_when_the_checkpoint_names_none(tmp_path):
    from cmh.runs.checkpoints import save_checkpoint

    save_checkpoint({"model": {}, "model_config": {}, "epoch": 1}, tmp_path / "c.pt")
    code, err = main_of(evaluate, ["--checkpoint", str(tmp_path / "c.pt")])
    assert code == 2 and "does not say which data it was trained on; pass --data DIR" in err


def test_evaluate_refuses_an_unsafe_checkpoint(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this ran",))

    torch.save({"model": {}, "model_config": {}, "x": Payload()}, tmp_path / "evil.pt")
    code, err = main_of(evaluate, ["--checkpoint", str(tmp_path / "evil.pt")])
    assert code == 2 and f"refusing to load {tmp_path / 'evil.pt'}" in err


# =========================================================================== prepare / demo
def make_lists(root: Path, files: dict[str, list[int]], bow: dict[int, list[int]] | None = None):
    """Lists (2 bow columns, 2 label bits) over `files` {list name: ids}; argv for prepare."""
    bow = bow or {}
    for name, members in files.items():
        lines = [list_line(f"{i // 1000:02d}/{i}.jpg", bow.get(i, [1, 0]), [1, 0]) for i in members]
        write(root / "lists" / name, "".join(x + "\n" for x in lines).encode())
    for i in {i for members in files.values() for i in members}:
        write(root / "images" / f"{i // 1000:02d}" / f"{i}.jpg", jpeg_bytes())
        write(root / "ann" / f"{i // 1000:02d}" / f"{i}.eng", annotation_bytes(i, f"a dog {i}"))
    return ["prepare", "--lists", str(root / "lists"), "--images", str(root / "images"),
            "--annotations", str(root / "ann"), "--bow-columns", "2", "--label-columns", "2",
            "--n-val", "1", "--out", str(root / "out")]  # fmt: skip


IDS = item_ids(8)


@pytest.mark.parametrize(
    "files, bow, message",
    [
        ({"iapr_test": IDS[:2], "iapr_retrieval": IDS[1:], "iapr_train": IDS[2:5]}, None,
         f"1 item(s) in both iapr_test and iapr_retrieval (e.g. {IDS[1]}); they must be disjoint"),
        ({"iapr_test": IDS[:2], "iapr_retrieval": [*IDS[2:], IDS[3]], "iapr_train": IDS[2:5]},
         None, f"iapr_retrieval:7: item {IDS[3]} is listed twice"),
        ({"iapr_test": IDS[:2], "iapr_retrieval": IDS[2:], "iapr_train": IDS[2:5]},
         {IDS[2]: [3, 0]}, f"item {IDS[2]} differs from its line"),
    ],
    ids=["query overlaps database", "listed twice", "differs between files"],
)  # fmt: skip
def test_prepare_refuses_inconsistent_lists(tmp_path, files, bow, message):
    argv = make_lists(tmp_path, files)
    if bow:  # the same id with other counts in iapr_train than in iapr_retrieval
        make_lists(tmp_path / "b", {"iapr_train": files["iapr_train"]}, bow)
        shutil.copy(tmp_path / "b/lists/iapr_train", tmp_path / "lists/iapr_train")
    code, err = main_of(data, argv)
    assert code == 2 and message in err, err
    assert not (tmp_path / "out/summary.json").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--vocab-size", "0"], "--vocab-size must be >= 1, got 0"),
        (["--bow-columns", "0"], "--bow-columns must be >= 1, got 0"),
        (["--n-val", "-1"], "--n-val must be >= 0, got -1"),
    ],
)
def test_prepare_refuses_bad_numbers(tmp_path, extra, message):
    argv = make_lists(tmp_path, {"iapr_test": IDS[:2], "iapr_retrieval": IDS[2:],
                                 "iapr_train": IDS[2:5]})  # fmt: skip
    code, err = main_of(data, [*argv, *extra])
    assert code == 2 and message in err, err


def test_prepare_refuses_an_out_that_is_a_file(tmp_path):
    argv = make_lists(tmp_path, {"iapr_test": IDS[:2], "iapr_retrieval": IDS[2:],
                                 "iapr_train": IDS[2:5]})  # fmt: skip
    (tmp_path / "out").write_text("a file")
    code, err = main_of(data, argv)
    assert code == 2 and f"--out {tmp_path / 'out'}: exists and is not a folder" in err


def test_prepare_refuses_when_every_item_is_dropped(tmp_path):
    argv = make_lists(tmp_path, {"iapr_test": IDS[:2], "iapr_retrieval": IDS[2:],
                                 "iapr_train": IDS[2:5]})  # fmt: skip
    for path in (tmp_path / "images").rglob("*.jpg"):
        path.write_bytes(b"")
    code, err = main_of(data, argv)
    assert code == 2 and "no usable items: all 8 were dropped" in err and "unreadable image" in err


def test_demo_refuses_bad_sizes(tmp_path):
    code, err = main_of(data, ["demo", "--out", str(tmp_path / "d"), "--n-items", "0"])
    assert code == 2 and err.startswith("error: ") and "--n-items" in err


# ============================================================ cheap checks, all at once
@pytest.mark.parametrize(
    "module, argv, problems",
    [
        ("evaluate", ["--checkpoint", "{t}/none.pt", "--data", "{t}/nodata"],
         ["checkpoint {t}/none.pt does not exist", "{t}/nodata: no such folder"]),
        ("retrieve", ["index", "--checkpoint", "{t}/none.pt", "--data", "{t}/nodata", "--out",
                      "{t}/idx"], ["checkpoint {t}/none.pt does not exist", "{t}/nodata: no such folder"]),
        ("retrieve", ["query", "--index", "{t}/noidx", "--image", "{t}/none.jpg"],
         ["--index {t}/noidx is not an index folder", "--image {t}/none.jpg: no such file"]),
    ],
)  # fmt: skip
def test_missing_paths_are_named_together_before_any_model(module, argv, problems, tmp_path,
                                                           monkeypatch):  # fmt: skip
    import importlib

    import cmh.models.hashers as hashers

    monkeypatch.setattr(hashers, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    argv = [a.format(t=tmp_path) for a in argv]
    code, err = main_of(importlib.import_module(module), argv)
    assert code == 2 and err.startswith("error: 2 problems:\n  - "), err
    for problem in problems:
        assert problem.format(t=tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
