"""cmh.utils.folder_lock: one writer per folder, refused at once naming the holder; a lock left by
a killed process blocks nothing; a shared file is waited for; a refused start takes back what it
made."""

from __future__ import annotations

import os
import signal
import time

import pytest
from lock_holder import hold

from cmh.utils.errors import UserError
from cmh.utils.folder_lock import LOCK_NAME, file_lock, folder_lock, writing_folder


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    child = hold(tmp_path / LOCK_NAME)
    try:
        t0 = time.perf_counter()
        with pytest.raises(UserError) as e, folder_lock(tmp_path, "a training run"):
            pass
        assert time.perf_counter() - t0 < 1
        message = str(e.value)
        assert f"{tmp_path} is in use: a training run is writing there" in message
        assert f"pid {child.pid} on " in message and "since " in message
        assert "-c" in message  # the holder's command line
    finally:
        child.kill()
        child.wait()


def test_a_lock_left_by_a_killed_process_blocks_nothing(tmp_path):
    child = hold(tmp_path / LOCK_NAME)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert (tmp_path / LOCK_NAME).is_file()  # the file stays; the kernel released the lock
    with folder_lock(tmp_path, "a training run"):
        assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()


def test_a_shared_file_lock_waits_for_its_holder(tmp_path):
    child = hold(tmp_path / "cache.lock", seconds=1.5)
    t0 = time.perf_counter()
    with file_lock(tmp_path / "cache.lock"):
        waited = time.perf_counter() - t0
    child.wait()
    assert waited > 0.5  # it waited for the holder to let go, then went on


def test_a_refused_start_takes_back_what_it_made(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(UserError), writing_folder(out, "a training run", done_when="last.pt"):
        (out / "train.log").write_text("started\n")
        raise UserError("bad input")
    assert not out.exists()
    # a folder that was there keeps what it held, loses what the failed start added
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError), writing_folder(out, "a training run", done_when="last.pt"):
        (out / "args.json").write_text("{}")
        raise UserError("bad input")
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == ["notes.txt"]
    # once the result is there, a later refusal removes nothing
    with pytest.raises(UserError), writing_folder(out, "a training run", done_when="last.pt"):
        (out / "last.pt").write_text("x")
        raise UserError("out of memory")
    assert (out / "last.pt").is_file()


def test_writing_folder_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    refused = pytest.raises(UserError, match="exists and is not a folder")
    with refused, writing_folder(tmp_path / "f", "a prepare", done_when="summary.json"):
        pass


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """A data-loader worker is a fork of the trainer: when the trainer dies it must not keep the
    folder locked while it notices and exits."""
    ready, said = os.pipe()
    with folder_lock(tmp_path, "a training run"):
        pid = os.fork()
        if pid == 0:  # the child: running (its fork hooks done), it outlives the parent's lock
            os.write(said, b"up")
            time.sleep(3)
            os._exit(0)
        assert os.read(ready, 2) == b"up"
    try:
        t0 = time.perf_counter()
        with folder_lock(tmp_path, "a training run"):  # the parent let go: free, child or not
            assert time.perf_counter() - t0 < 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_file_system_that_refuses_locks_gets_a_warning(tmp_path, monkeypatch, capsys):
    import errno

    from cmh.utils import folder_lock as module

    def refuse(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(module.fcntl, "flock", refuse)
    ran = False
    with folder_lock(tmp_path, "a training run"):
        ran = True
    assert ran
    err = capsys.readouterr().err
    assert f"warning: {tmp_path}: the file system refuses locks (No locks available)" in err
    assert "nothing stops a second process" in err
