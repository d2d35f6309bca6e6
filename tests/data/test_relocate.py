"""A prepared folder moved away from its images: refused when loaded, with a message that says
it moved and how to point it at the images (``data.py relocate``), which then works; a folder
moved along with its images needs nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import data
from cmh.utils.errors import UserError


@pytest.fixture
def demo(tmp_path) -> Path:
    assert data.main(["demo", "--out", str(tmp_path / "d"), "--n-items", "40", "--image-size", "16"]) == 0
    return tmp_path / "d"


def test_a_moved_folder_is_named_as_moved_and_relocate_points_it_back(demo, tmp_path, capsys):
    moved = tmp_path / "elsewhere" / "prep"
    moved.parent.mkdir()
    shutil.move(demo / "prepared", moved)
    stale = data.HashingDataset(data.load_prepared(moved), "train", None, 16, 16)  # loads: text
    with pytest.raises(UserError) as info:  # alone would need no image; the first image read fails
        stale[0]
    message = str(info.value)
    assert "image " in message and "does not exist; " in message
    assert f"{moved} was prepared at {(demo / 'prepared').resolve()} and has moved since" in message
    assert f"python data.py relocate --data {moved}" in message
    assert data.main(["relocate", "--data", str(moved)]) == 0
    assert "40 image paths now point at the images" in capsys.readouterr().out
    prepared = data.load_prepared(moved)
    assert all(prepared.image_path(it).is_file() for it in prepared.items)
    summary = json.loads((moved / "summary.json").read_text())
    assert summary["prepared_at"] == str(moved.resolve())
    ds = data.HashingDataset(prepared, "train", None, 16, 16)
    assert ds[0]["image"].shape == (3, 16, 16)
    assert data.main(["relocate", "--data", str(moved)]) == 0  # again: nothing moves


def test_moved_with_its_images_needs_nothing(demo, tmp_path):
    shutil.move(demo, tmp_path / "d2")
    prepared = data.load_prepared(tmp_path / "d2" / "prepared")
    assert prepared.image_path(prepared.items[0]).is_file()


def test_a_wrong_from_is_refused_and_changes_nothing(demo, tmp_path, capsys):
    moved = tmp_path / "prep"
    shutil.move(demo / "prepared", moved)
    before = (moved / "manifest.jsonl").read_bytes()
    assert data.main(["relocate", "--data", str(moved), "--from", str(tmp_path / "nowhere")]) == 2
    assert "which does not exist; pass --from with the folder's old place" in capsys.readouterr().err
    assert (moved / "manifest.jsonl").read_bytes() == before
    assert data.main(["relocate", "--data", str(tmp_path / "nothing")]) == 2
    assert "is not a prepared dataset" in capsys.readouterr().err
