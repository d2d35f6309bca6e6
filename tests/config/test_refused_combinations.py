"""Input that used to be ignored without a word: --amp on a CPU (warned, recorded), --image-cache
with --freeze-backbones (refused), the extraction precision in the frozen-feature cache key, and
scripts/real_captions.py reusing a run made with other arguments (refused) or timing part of it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from types import SimpleNamespace

import pytest
import torch

import train
from cmh.config.argument_checks import check_args
from cmh.data.caches import frozen_features
from cmh.runs import reuse
from cmh.utils.errors import UserError
from scripts import real_captions

AMP_WARNING = "--amp is bf16 autocast on CUDA only; this run is on cpu, so it runs in float32"


@pytest.mark.slow  # ~15 s on 2 busy CPU cores: model build, feature extraction, 1 epoch
def test_amp_on_cpu_warns_once_and_is_recorded(tiny_prepared, tmp_path, tiny_flags, monkeypatch):
    """--amp on a CPU: one warning in train.log, args.json says what ran (amp false) and what was
    asked (amp_requested true), and the frozen features are extracted (and keyed) as float32."""
    keyed = []
    real_key = frozen_features.cache_key

    def spy(model, root, precision):
        keyed.append(precision)
        return real_key(model, root, precision)

    monkeypatch.setattr(frozen_features, "cache_key", spy)
    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, "--epochs", "1"]
    argv += ["--device", "cpu", "--amp", "--freeze-backbones"]
    assert train.main([*argv, "--feature-cache", str(tmp_path / "features")]) == 0
    assert (out / "train.log").read_text().count(AMP_WARNING) == 1
    saved = json.loads((out / "args.json").read_text())
    assert saved["amp"] is False and saved["amp_requested"] is True
    assert keyed == ["fp32"]


def test_resolve_amp_warns_only_when_amp_is_dropped(caplog):
    def resolved(amp: bool, device: str, is_main: bool = True) -> argparse.Namespace:
        args = argparse.Namespace(amp=amp, amp_requested=None)
        train.resolve_amp(args, torch.device(device), is_main)
        return args

    with caplog.at_level(logging.WARNING, logger="train"):
        assert vars(resolved(True, "cuda")) == {"amp": True, "amp_requested": True}
        assert vars(resolved(False, "cpu")) == {"amp": False, "amp_requested": False}
        assert vars(resolved(True, "cpu", is_main=False)) == {"amp": False, "amp_requested": True}
        assert caplog.messages == []  # on CUDA, without --amp, and on ranks other than 0
        assert vars(resolved(True, "cpu")) == {"amp": False, "amp_requested": True}
    assert caplog.messages == [AMP_WARNING]


def test_image_cache_with_frozen_backbones_is_refused(tiny_prepared, tmp_path, tiny_flags, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(tiny_prepared), "--out", str(out), *tiny_flags, "--epochs", "1"]
    argv.append("--freeze-backbones")
    assert train.main([*argv, "--image-cache"]) == 2
    err = capsys.readouterr().err
    assert "--image-cache does not go with --freeze-backbones" in err
    assert "never reads images per step" in err and "drop --image-cache" in err
    assert not out.exists()  # refused before any work
    # each alone is accepted
    check_args(train.parse_args([*argv]))
    check_args(train.parse_args([*argv[:-1], "--image-cache"]))


def fake_model(seed: int = 0) -> SimpleNamespace:
    """What cache_key reads of a model: its config and the image backbone's weights."""
    torch.manual_seed(seed)
    config = SimpleNamespace(
        image_size=32, image_norm="imagenet", max_length=24, pooling="cls", tokenizer_json="{}"
    )
    return SimpleNamespace(
        config=config, image=SimpleNamespace(backbone=torch.nn.Linear(3, 2)), text=None
    )


def test_feature_cache_key_holds_the_precision(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"id": 1}\n')
    model = fake_model()
    bf16 = frozen_features.cache_key(model, tmp_path, "bf16")
    fp32 = frozen_features.cache_key(model, tmp_path, "fp32")
    assert bf16 != fp32
    # stable otherwise: the same inputs (another model object with the same weights) give the key
    assert frozen_features.cache_key(fake_model(), tmp_path, "fp32") == fp32
    assert frozen_features.cache_key(model, tmp_path, "bf16") == bf16
    assert frozen_features.cache_key(fake_model(seed=1), tmp_path, "fp32") != fp32
    other_norm = fake_model()
    other_norm.config.image_norm = "cifar10"  # other input statistics: other image features
    assert frozen_features.cache_key(other_norm, tmp_path, "fp32") != fp32
    assert frozen_features.extraction_precision(True) == "bf16"
    assert frozen_features.extraction_precision(False) == "fp32"
    with pytest.raises(ValueError, match="precision must be 'bf16' or 'fp32'"):
        frozen_features.cache_key(model, tmp_path, "float16")


def test_features_of_both_precisions_get_their_own_file(tmp_path, monkeypatch):
    (tmp_path / "manifest.jsonl").write_text('{"id": 1}\n')
    calls = []

    def extract(model, loader, device, amp):
        calls.append(amp)
        return {"ids": torch.tensor([1]), "amp": torch.tensor(amp)}

    monkeypatch.setattr(frozen_features, "extract", extract)
    data, cache, cpu = SimpleNamespace(root=tmp_path), tmp_path / "features", torch.device("cpu")
    model = fake_model()
    got = {
        amp: frozen_features.load_or_extract(model, data, lambda: None, cache, cpu, amp=amp)
        for amp in (False, True, False, True)
    }
    assert calls == [False, True]  # each precision extracted once, then read from its own file
    assert len(list(cache.glob("features-*.pt"))) == 2
    assert got[False]["amp"].item() is False and got[True]["amp"].item() is True


def text_flags(tiny_flags: list[str], epochs: int) -> list[str]:
    return ["--modalities", "text", *tiny_flags, "--epochs", str(epochs), "--device", "cpu"]


@pytest.mark.slow  # ~10 s: two tiny text-only runs (train, then resume)
def test_real_captions_reuses_only_a_run_with_the_same_arguments(
    tiny_prepared, tmp_path, tiny_flags
):
    """train_and_read: trains, then reuses the results (same arguments), resumes an interrupted
    run with the recorded arguments and adds its time to the first attempt's, and refuses a run
    folder made with other arguments, naming the argument."""
    out = tmp_path / "bow-16"
    flags = text_flags(tiny_flags, 1)
    first = real_captions.train_and_read(tiny_prepared, out, flags)
    assert first["seconds"] > 0 and "--epochs 1" in first["command"]
    stamp = (out / "last.pt").stat().st_mtime_ns
    assert real_captions.train_and_read(tiny_prepared, out, flags) == first  # reused, not rerun
    assert (out / "last.pt").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match=r"other arguments \(--epochs: recorded 1, now 2\)"):
        real_captions.train_and_read(tiny_prepared, out, text_flags(tiny_flags, 2))
    (out / "results.json").unlink()  # as if killed after its last checkpoint
    resumed = real_captions.train_and_read(tiny_prepared, out, flags)
    assert resumed["command"] == first["command"] and resumed["map"] == first["map"]
    attempts = json.loads((out / reuse.WALL_TIME).read_text())
    assert len(attempts) == 2
    assert resumed["seconds"] == pytest.approx(
        sum(a["end"] - a["start"] for a in attempts), abs=0.1
    )
    assert resumed["seconds"] > first["seconds"]


def test_run_decision(tmp_path):
    out = tmp_path / "run"
    argv = ["--data", "prepared", "--out", str(out), "--epochs", "3", "--lr", "1e-3"]
    assert reuse.run_decision(out, argv) == "fresh"
    out.mkdir()
    (out / "last.pt").write_bytes(b"")
    with pytest.raises(UserError, match="holds a run without args.json"):
        reuse.run_decision(out, argv)
    recorded = vars(train.parse_args(argv))
    # where things are and how the run was started are not compared; amp is compared as asked
    recorded.update(
        data="/moved/prepared", given=["out", "resume"], resume=True, amp_requested=True
    )
    (out / "args.json").write_text(json.dumps(recorded))
    assert reuse.run_decision(out, [*argv, "--amp"]) == "resume"
    (out / "results.json").write_text("{}")
    assert reuse.run_decision(out, [*argv, "--amp"]) == "reuse"
    with pytest.raises(UserError, match=r"--amp: recorded True, now False"):
        reuse.run_decision(out, argv)
    with pytest.raises(UserError, match=r"--lr: recorded 0.001, now 0.0001\); delete that folder"):
        reuse.run_decision(out, [*argv, "--amp", "--lr", "1e-4"])
    del recorded["pooling"]  # written by a code version without that flag
    (out / "args.json").write_text(json.dumps(recorded))
    with pytest.raises(UserError, match=r"--pooling: not recorded, now 'cls'"):
        reuse.run_decision(out, [*argv, "--amp"])


def test_wall_time_adds_up_every_attempt(tmp_path, monkeypatch):
    """A killed attempt counts until the newest file it wrote; the resumed one is added to it; a
    fresh run starts its count again."""
    now = [1000.0]
    monkeypatch.setattr(reuse, "time", SimpleNamespace(time=lambda: now[0]))
    out = tmp_path / "run"
    reuse.begin_attempt(out, fresh=True)
    (out / "last.pt").write_bytes(b"")
    os.utime(out / "last.pt", (1030.0, 1030.0))  # killed after this write
    now[0] = 2000.0
    reuse.begin_attempt(out, fresh=False)
    now[0] = 2060.0
    assert reuse.end_attempt(out) == pytest.approx(90.0)
    assert (out / "wall_seconds.txt").read_text() == "90.0\n"
    now[0] = 3000.0
    reuse.begin_attempt(out, fresh=True)
    now[0] = 3005.0
    assert reuse.end_attempt(out) == pytest.approx(5.0)
    assert time.time() > 1e9  # the real clock is untouched


def test_real_captions_refuses_before_any_training(tmp_path, monkeypatch, capsys):
    """main: a run folder made with other arguments stops the script (exit 2) before it trains
    anything, also the rows before that folder's."""
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "items.jsonl").write_text("")
    out, prepared = tmp_path / "out", tmp_path / "out" / "prepared"
    monkeypatch.setattr(real_captions, "prepare_real", lambda meta, work: prepared)
    monkeypatch.setattr(reuse, "run_entry_point", lambda *a: pytest.fail("trained"))
    argv = ["--meta", str(tmp_path / "meta"), "--out", str(out), "--methods", "bow"]
    argv += ["--bits", "16", "32"]
    args = real_captions.parse_args(argv)
    later = out / "bow-32"
    later.mkdir(parents=True)
    flags = real_captions.planned_runs(args, "")[1][2]
    recorded = vars(train.parse_args(real_captions.train_argv(prepared, later, flags)))
    (later / "args.json").write_text(json.dumps({**recorded, "epochs": 3}))
    (later / "last.pt").write_bytes(b"")
    assert real_captions.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        f"error: {later} holds a run made with other arguments (--epochs: recorded 3, now 10)"
        in err
    )
    assert not (out / "bow-16").exists()
