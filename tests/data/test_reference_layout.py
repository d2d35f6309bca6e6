"""The reference implementation's data layout: the iapr_* lists, JPEGImages/NN/ID.jpg and a
folder of plain-text annotations/NN/ID.txt whose caption is the last non-empty line."""

from __future__ import annotations

from pathlib import Path

from data_fixtures import item_ids
from test_data import make_lists

import data
from cmh.data.sources.iapr_lists import read_plain_caption


def as_reference_layout(root: Path) -> list[str]:
    """make_lists' layout with every NN/ID.eng replaced by an NN/ID.txt of several lines."""
    argv = make_lists(root)
    for eng in sorted((root / "ann").rglob("*.eng")):
        number = int(eng.stem)
        text = f"title of {number}\n\nsome   notes\n  a cat {number} on a mat  \n\n   \n"
        eng.with_suffix(".txt").write_bytes(text.encode("cp1252"))
        eng.unlink()
    return argv


def test_plain_text_annotations_prepare_with_the_lists_split(tmp_path):
    argv = as_reference_layout(tmp_path)
    assert data.main(argv) == 0
    prepared = data.load_prepared(tmp_path / "out")
    ids = item_ids(13)
    assert prepared.splits["query"] == ids[:4] and prepared.splits["train"] == ids[4:8]
    assert prepared.splits["database"] == ids[4:12]
    for i in prepared.splits["database"]:
        assert prepared.captions([i]) == [f"a cat {i} on a mat"]


def test_last_non_empty_line_and_empty_file(tmp_path):
    path = tmp_path / "1.txt"
    path.write_text("first line\nlast  line\n\n")
    assert read_plain_caption(path) == "last line"
    path.write_text("\n  \n")
    assert read_plain_caption(path) == ""


def test_eng_wins_over_txt_and_a_missing_annotation_is_dropped(tmp_path, capsys):
    argv = make_lists(tmp_path)
    ids = item_ids(13)
    folder = {i: tmp_path / "ann" / f"{i // 1000:02d}" for i in ids}
    (folder[ids[5]] / f"{ids[5]}.txt").write_text("not this one\n")
    (folder[ids[6]] / f"{ids[6]}.eng").unlink()
    assert data.main(argv) == 0
    prepared = data.load_prepared(tmp_path / "out")
    assert prepared.captions([ids[5]]) == [f"a dog {ids[5]}"]
    assert ids[6] not in prepared.index_of()
    assert f"{ids[6]} (no annotation)" in capsys.readouterr().out
