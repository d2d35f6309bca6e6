"""train.py says how many CPU threads it computes with, and why (cmh.utils.devices.thread_note)."""

from __future__ import annotations

import torch

from cmh.utils.devices import thread_note


def test_thread_note_names_the_count_and_its_source(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert thread_note() == "1 CPU thread (OMP_NUM_THREADS=1)"
        torch.set_num_threads(2)
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert thread_note() == "2 CPU threads (one per core; OMP_NUM_THREADS unset)"
    finally:
        torch.set_num_threads(before)


def test_the_training_log_says_it(tiny_prepared, tiny_flags, tmp_path):
    import train

    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, "--epochs", "1"]
    assert train.main(argv) == 0
    assert f"device cpu, {thread_note()}" in (out / "train.log").read_text()
