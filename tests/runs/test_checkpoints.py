"""Checkpoints from strangers, damaged checkpoints, a full disk while writing one, and checkpoints
that do not match the data or their own config (refused by evaluate.py with the mismatch named)."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import evaluate
from cmh.runs import checkpoints as checkpoint
from cmh.runs.checkpoints import load_checkpoint, save_checkpoint
from cmh.utils.errors import UserError


def small_state(epoch: int = 1) -> dict:
    return {
        "model": {"w": torch.arange(20000, dtype=torch.float32) * epoch},
        "model_config": {"bits": 16},
        "epoch": epoch,
    }


class Payload:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    torch.save({**small_state(), "extra": Payload(marker)}, path)
    with pytest.raises(UserError, match="refusing to load") as info:
        load_checkpoint(path)
    assert "exec" in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("keep", [0, 3, 100, 0.5, -200])
def test_truncated_checkpoint_is_named(tmp_path, keep):
    path = tmp_path / "last.pt"
    save_checkpoint(small_state(), path)
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    path.write_bytes(raw[:n])
    with pytest.raises(UserError, match=r"(truncated or corrupted|is empty)") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def middle_of(path: Path, raw: bytes, suffix: str) -> int:
    """Offset of the middle byte of the zip entry whose name ends with `suffix`."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    at = info.header_offset  # local header: 30 bytes, then the name and the extra field
    name, extra = (int.from_bytes(raw[at + k : at + k + 2], "little") for k in (26, 28))
    return at + 30 + name + extra + info.file_size // 2


@pytest.mark.parametrize("where", ["pickle", "tensor data", "zip directory"])
def test_corrupted_checkpoint_is_named(tmp_path, where):
    path = tmp_path / "best.pt"
    save_checkpoint(small_state(), path)
    raw = bytearray(path.read_bytes())
    offset = {
        "pickle": middle_of(path, raw, "data.pkl"),
        "tensor data": middle_of(path, raw, "data/0"),  # torch.load alone loads this silently
        "zip directory": len(raw) - 60,
    }[where]
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"(corrupted|truncated)") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"hello, not a checkpoint at all")
    with pytest.raises(UserError, match="truncated or corrupted"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a checkpoint of this project"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def fail_with(monkeypatch, target, name: str, exc: OSError) -> None:
    def failing(*args, **kwargs):
        raise exc

    monkeypatch.setattr(target, name, failing)


@pytest.mark.parametrize("step", ["torch.save", "fsync", "os.replace", "/dev/full"])
def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch, step):
    path = tmp_path / "last.pt"
    save_checkpoint(small_state(1), path)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if step == "torch.save":
        fail_with(monkeypatch, checkpoint.torch, "save", full)
    elif step == "fsync":
        fail_with(monkeypatch, checkpoint.os, "fsync", full)
    elif step == "os.replace":
        fail_with(monkeypatch, checkpoint.os, "replace", full)
    else:  # a real ENOSPC from the kernel: the temporary file is opened on /dev/full
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full here")
        real_open = builtins.open
        monkeypatch.setattr(checkpoint, "open", lambda p, mode: real_open("/dev/full", mode),
                            raising=False)  # fmt: skip
    with pytest.raises(UserError) as info:
        save_checkpoint(small_state(2), path)
    message = str(info.value)
    assert f"could not write checkpoint {path}" in message and "No space left" in message
    assert "Free disk space" in message
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_temporaries_of_killed_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".last.pt.tmp-{int(dead.stdout)}"
    alive = tmp_path / f".last.pt.tmp-{os.getppid()}"  # a writer that still runs: left alone
    other = tmp_path / f".best.pt.tmp-{int(dead.stdout)}"  # another file's: not ours to touch
    for p in (stale, alive, other):
        p.write_bytes(b"partial")
    save_checkpoint(small_state(), tmp_path / "last.pt")
    assert not stale.exists() and alive.exists() and other.exists()


# =========================================================================== evaluate.py
@pytest.fixture(scope="module")
def model_checkpoint(tiny_prepared, tmp_path_factory) -> Path:
    """A checkpoint as train.py writes it (untrained tiny model), naming the tiny dataset."""
    import data
    import models

    prepared = data.load_prepared(tiny_prepared)
    cfg = models.ModelConfig(bits=16, image_weights="none", image_size=32, text_model="tiny",
                             max_length=24, label_names=list(prepared.label_names),
                             bow_dim=prepared.bow_dim())  # fmt: skip
    torch.manual_seed(0)
    model, _ = models.build_model(cfg, captions=prepared.captions(prepared.splits["train"]))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    state = {"model": model.state_dict(), "model_config": cfg.to_dict(), "epoch": 1,
             "args": {"data": str(tiny_prepared)}}  # fmt: skip
    save_checkpoint(state, path)
    return path


def run_evaluate(path: Path, out: Path, *extra: str) -> int:
    return evaluate.main(["--checkpoint", str(path), "--out", str(out), "--no-plots", *extra])


def edited(source: Path, tmp_path: Path, edit) -> Path:
    state = load_checkpoint(source)
    edit(state)
    save_checkpoint(state, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def test_evaluate_control_checkpoint_runs(model_checkpoint, tmp_path):
    assert run_evaluate(model_checkpoint, tmp_path) == 0
    assert json.loads((tmp_path / "results.json").read_text())["bits"] == 16


def test_evaluate_refuses_data_with_another_label_count(model_checkpoint, tiny_prepared, tmp_path,
                                                        capsys):  # fmt: skip
    other = tmp_path / "other"
    shutil.copytree(tiny_prepared, other)
    with open(other / "labels.txt", "a") as f:
        f.write("an-extra-label\n")
    summary = json.loads((other / "summary.json").read_text())
    summary["labels"] += 1
    (other / "summary.json").write_text(json.dumps(summary))
    n = summary["labels"]
    assert run_evaluate(model_checkpoint, tmp_path / "e", "--data", str(other)) == 2
    err = capsys.readouterr().err
    assert f"{n - 1} labels in the checkpoint, {n} in the data" in err and str(other) in err


def set_bits(state: dict) -> None:
    state["model_config"]["bits"] = 32


def drop_text_layer(state: dict) -> None:
    text = json.loads(state["model_config"]["text_config"])
    text["num_hidden_layers"] -= 1
    state["model_config"]["text_config"] = json.dumps(text)


@pytest.mark.parametrize(
    "edit, detail",
    [(set_bits, "size mismatch for"), (drop_text_layer, "Unexpected key(s)")],
    ids=["code length", "text model"],
)
def test_evaluate_refuses_weights_that_do_not_match_their_config(
    model_checkpoint, tmp_path, capsys, edit, detail
):
    path = edited(model_checkpoint, tmp_path, edit)
    assert run_evaluate(path, tmp_path / "e") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and detail in err, err


def test_evaluate_refuses_unknown_config_keys(model_checkpoint, tmp_path, capsys):
    path = edited(model_checkpoint, tmp_path, lambda s: s["model_config"].update(colour="red"))
    assert run_evaluate(path, tmp_path / "e") == 2
    assert "unknown keys ['colour']" in capsys.readouterr().err


def test_evaluate_refuses_a_damaged_checkpoint(model_checkpoint, tmp_path, capsys):
    path = tmp_path / "best.pt"
    raw = bytearray(model_checkpoint.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    assert run_evaluate(path, tmp_path / "e") == 2
    err = capsys.readouterr().err
    assert "fails its CRC-32 check" in err and str(path) in err
