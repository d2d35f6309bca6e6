"""cmh/utils/atomic_io.py: the one way files are replaced (checkpoints, results, caches, pages)."""

from __future__ import annotations

import pytest

from cmh.utils.atomic_io import atomic_path, temporary_name, write_text_atomic


def test_the_new_content_replaces_the_old(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    write_text_atomic(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary left


def test_an_error_while_writing_leaves_the_old_file(tmp_path):
    target = tmp_path / "last.pt"
    target.write_text("the last good checkpoint")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a chec")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "the last good checkpoint"
    assert not temporary_name(target).exists()


def test_the_target_is_untouched_until_the_block_ends(tmp_path):
    target = tmp_path / "page.html"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # a reader meanwhile sees the old file
    assert target.read_text() == "new"
