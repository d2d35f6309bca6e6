"""train.py and evaluate.py end to end on a tiny generated dataset with tiny models (CPU)."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from conftest import COMPARE_FLAGS, skip_compile_if_forced_isa
from learning import assert_diverse

import evaluate
import retrieve
import train
from cmh.evaluation.hamming_metrics import chance_level
from cmh.objectives import triplet as triplet_objective
from data import load_prepared


def run_train(prepared, out, flags, *extra) -> int:
    return train.main(["--data", str(prepared), "--out", str(out), *flags, *extra])


@pytest.fixture(scope="module")
def finished_run(learned_run):
    """conftest.learned_run: a finished run whose towers learned (checked there)."""
    return learned_run


def test_run_folder_contents(finished_run):
    for name in (
        "args.json",
        "train.log",
        "metrics.jsonl",
        "best.pt",
        "last.pt",
        "results.json",
        "pr_curve.png",
        "precision_at_n.png",
    ):
        assert (finished_run / name).is_file(), name
    lines = [json.loads(x) for x in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 7))
    for r in lines:
        assert {"loss", "i2t", "t2i", "i2i", "t2t", "lr", "seconds", "val_map_i2t"} <= set(r)
    results = json.loads((finished_run / "results.json").read_text())
    data = load_prepared(json.loads((finished_run / "args.json").read_text())["data"])
    chance = chance_level(*(data.label_matrix(data.splits[s]) for s in ("query", "database")))
    for d in ("i2t", "t2i"):
        assert results[f"chance_{d}"] == chance  # the labels' chance level, computed once
        assert results[f"map_{d}"] >= chance + 0.1, d  # the run learned (see conftest)
        assert abs(results[f"map_{d}_tie_avg"] - results[f"map_{d}"]) < 0.05, d
    best = max(lines, key=lambda r: (r["val_map_i2t"] + r["val_map_t2i"]) / 2)
    assert results["best_epoch"] == best["epoch"]  # selection by validation, first best kept


def test_checkpoints_load_safely(finished_run):
    last = torch.load(finished_run / "last.pt", weights_only=True)
    assert {"model", "model_config", "optimizer", "epoch", "args", "rng", "best"} <= set(last)
    best = torch.load(finished_run / "best.pt", weights_only=True)  # for evaluation only
    assert {"model", "model_config", "epoch", "args", "best"} <= set(best)
    assert "optimizer" not in best


@pytest.mark.compares
def test_evaluate_reproduces_final_numbers(finished_run, tmp_path, capsys):
    assert (
        evaluate.main(["--checkpoint", str(finished_run / "best.pt"), "--out", str(tmp_path)]) == 0
    )
    ours = json.loads((tmp_path / "results.json").read_text())
    theirs = json.loads((finished_run / "results.json").read_text())
    for key in ("map_i2t", "map_t2i", "map_i2t_tie_avg", "map_t2i_tie_avg", "chance_i2t"):
        assert ours[key] == theirs[key], key
    assert (tmp_path / "pr_curve.png").is_file()
    assert "I2T" in capsys.readouterr().out


@pytest.fixture(scope="module")
def uninterrupted(tiny_prepared, tmp_path_factory):
    """COMPARE_FLAGS for 3 epochs in one go, no loader workers (codes checked diverse)."""
    full = tmp_path_factory.mktemp("uninterrupted") / "full"
    flags = [*COMPARE_FLAGS, "--num-workers", "0", "--epochs", "3"]
    assert run_train(tiny_prepared, full, flags) == 0
    assert_diverse(full)  # a comparison of codes, not constants
    return full


@pytest.mark.compares
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_resume_equals_uninterrupted(tiny_prepared, tmp_path, uninterrupted, workers):
    """Augmentation is drawn from (seed, epoch, item), so loader workers (persistent ones, whose
    RNG would restart on resume) change nothing: 1 epoch + --resume to 3, with 0, 1 or 2 loader
    workers == 3 epochs in one go without workers."""
    full, part = uninterrupted, tmp_path / "part"
    flags = [*COMPARE_FLAGS, "--num-workers", str(workers)]
    assert run_train(tiny_prepared, part, flags, "--epochs", "1") == 0
    assert train.main(["--out", str(part), "--resume", "--epochs", "3"]) == 0
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(part / "last.pt", weights_only=True)
    assert b["epoch"] == 3
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    la = (full / "metrics.jsonl").read_text().splitlines()
    lb = (part / "metrics.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if not k.endswith("seconds")}  # noqa: E731
    assert [strip(x) for x in la] == [strip(x) for x in lb]


@pytest.mark.parametrize(
    "every_s, stop_after, drawn_after",
    [(0.0, None, [1, 2, 3]), (1e9, None, [3]), (1e9, 2, [2, 3]), (1e9, 1, [1, 3])],
)
def test_curves_are_redrawn_every_few_seconds_at_the_end_and_on_a_stop(
    tiny_prepared, tmp_path, tiny_flags, monkeypatch, every_s, stop_after, drawn_after
):
    """curves.png after the epochs that end CURVES_EVERY_S after the last drawing, after the
    last, and, when a run stops early (Ctrl-C after epoch `stop_after`'s files), on its way out;
    the --resume that finishes it draws its last epoch."""
    from cmh.engine import loop
    from cmh.evaluation import training_curves
    from cmh.utils.interrupts import Interrupted

    out, drawn, written = tmp_path / "r", [], loop.checkpoint_epoch

    def plot(run_dir):
        drawn.append(len((run_dir / "metrics.jsonl").read_text().splitlines()))

    def checkpoint_then_stop(run, model, optimizer, record, best, best_epoch):
        kept = written(run, model, optimizer, record, best, best_epoch)
        if record["epoch"] == stop_after and not (out / "stopped").exists():
            (out / "stopped").touch()
            raise Interrupted(signal.SIGINT)
        return kept

    monkeypatch.setattr(training_curves, "CURVES_EVERY_S", every_s)
    monkeypatch.setattr(training_curves, "plot_run_curves", plot)
    monkeypatch.setattr(loop, "checkpoint_epoch", checkpoint_then_stop)
    status = run_train(tiny_prepared, out, tiny_flags, "--epochs", "3")
    if stop_after is not None:
        assert status == 130 and drawn == [stop_after]
        assert train.main(["--out", str(out), "--resume"]) == 0
    assert status in (0, 130) and drawn == drawn_after


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bits", "0"], "--bits must be >= 1"),
        (["--margin", "-1"], "--margin must be >= 0"),
        (["--batch-size", "1"], "--batch-size must be >= 2"),
        (["--device", "tpu"], "--device must be auto, cpu or cuda"),
        (["--optimizer", "separate", "--image-lr", "1e-4"], "needs both --image-lr and --text-lr"),
        (["--demo"], "--demo trains on its own generated data"),
    ],
)
def test_bad_arguments_refused(tiny_prepared, tmp_path, tiny_flags, capsys, extra, message):
    assert run_train(tiny_prepared, tmp_path / "r", tiny_flags, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_not_a_prepared_dataset_refused(tmp_path, tiny_flags, capsys):
    assert run_train(tmp_path, tmp_path / "r", tiny_flags) == 2
    assert "not a prepared dataset" in capsys.readouterr().err


def test_every_cheap_problem_in_one_message_before_any_model(tmp_path, tiny_flags, capsys,
                                                             monkeypatch):  # fmt: skip
    """A missing data folder and a missing pretrained model are named together, before any model
    is built; no run folder is left behind."""
    import cmh.engine.run_setup as run_setup

    monkeypatch.setattr(run_setup, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    argv = ["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), *tiny_flags,
            "--text-model", str(tmp_path / "no-bert")]  # fmt: skip
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 problems:\n  - ")
    assert f"{tmp_path / 'nowhere'}: no such folder; prepare a dataset there first" in err
    assert f"--text-model {tmp_path / 'no-bert'}: not a folder" in err
    assert not (tmp_path / "r").exists()


def test_existing_run_needs_resume(finished_run, tiny_prepared, tiny_flags, capsys):
    assert run_train(tiny_prepared, finished_run, tiny_flags) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "(it finished: --resume --epochs N trains it further)" in err
    assert f"or delete {finished_run}" in err


def test_non_finite_loss_stops_and_keeps_checkpoint(
    tiny_prepared, tmp_path, tiny_flags, monkeypatch, caplog
):
    real_loss, calls = triplet_objective.hashing_loss, {"n": 0}

    def poisoned(*args, **kwargs):
        out = real_loss(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 4:  # epoch 1 has 3 steps (60 items, batch 16, drop_last off)
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(triplet_objective, "hashing_loss", poisoned)
    assert run_train(tiny_prepared, tmp_path, tiny_flags, "--epochs", "3") == 1
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    log = (tmp_path / "train.log").read_text()
    assert "non-finite loss" in log and "epoch 2" in log and "batch item ids" in log


def test_separate_optimizer_learning_rates(tiny_prepared, tmp_path, tiny_flags):
    flags = [*tiny_flags, "--optimizer", "separate", "--image-lr", "1e-3", "--text-lr", "2e-3"]
    assert run_train(tiny_prepared, tmp_path, flags, "--epochs", "1") == 0
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["lr"] == {"image": 1e-3, "text": 2e-3}


def test_evaluate_takes_a_run_folder_as_its_best_pt(finished_run, tmp_path, capsys):
    """--checkpoint RUN evaluates RUN/best.pt and says so; the numbers are best.pt's."""
    out = tmp_path / "e"
    assert evaluate.main(["--checkpoint", str(finished_run), "--out", str(out)]) == 0
    assert f"evaluating {finished_run / 'best.pt'}" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint"] == str(finished_run / "best.pt")
    assert evaluate.main(["--checkpoint", str(finished_run / "best.pt"), "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text()) == results


def test_evaluate_refuses_a_folder_without_best_pt(tmp_path, capsys):
    assert evaluate.main(["--checkpoint", str(tmp_path)]) == 2
    assert "is a directory without best.pt; give RUN/best.pt" in capsys.readouterr().err


def test_evaluate_refuses_other_labels(finished_run, tmp_path, capsys):
    import shutil

    data = json.loads((finished_run / "args.json").read_text())["data"]
    other = tmp_path / "other"
    shutil.copytree(data, other)
    names = (other / "labels.txt").read_text().splitlines()
    (other / "labels.txt").write_text("\n".join(reversed(names)) + "\n")
    code = evaluate.main(
        [
            "--checkpoint",
            str(finished_run / "best.pt"),
            "--data",
            str(other),
            "--out",
            str(tmp_path / "e"),
        ]
    )
    assert code == 2
    assert "do not match the checkpoint" in capsys.readouterr().err


def test_out_of_memory_names_the_batch_size(
    tiny_prepared, tmp_path, tiny_flags, monkeypatch, capsys
):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(triplet_objective, "hashing_loss", oom)
    assert run_train(tiny_prepared, tmp_path, tiny_flags, "--epochs", "1") == 2
    err = capsys.readouterr().err
    assert "out of GPU memory at --batch-size 16" in err and "lower --batch-size" in err


def test_frozen_feature_mode(learn_prepared, tmp_path, caplog, capsys):
    """--freeze-backbones: features extracted once and cached, only the hash layers change;
    evaluate.py and retrieve.py index encode from the run's cache (and say so), and a full
    forward pass on raw data (cache moved away) reproduces the numbers and codes exactly.
    On the learning fixture's data and flags, so the codes compared are diverse (checked)."""
    from conftest import LEARN_FLAGS
    from learning import assert_learned

    cache = tmp_path / "features"
    # only the hash layers train, on random frozen backbones: 40 cheap epochs at lr 1e-2 give
    # diverse codes and mAP about chance + 0.2 / + 0.16 (lr 3e-3: + 0.14 / + 0.08; `pytest -n 0 -s`
    # prints them)
    flags = [*LEARN_FLAGS, "--freeze-backbones", "--feature-cache", str(cache), "--lr", "1e-2",
             "--epochs", "40", "--eval-every", "5"]  # fmt: skip
    assert run_train(learn_prepared, tmp_path / "a", flags) == 0
    files = list(cache.glob("features-*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert run_train(learn_prepared, tmp_path / "b", flags, "--epochs", "1") == 0
    assert files[0].stat().st_mtime_ns == stamp  # same data, same model: the cache is reused
    # the backbones never move: same seed, same initial backbone as epoch-1 run b
    first = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for k, v in state["model"].items():
        if ".head." not in k:
            assert torch.equal(v, first["model"][k]), k
    report = assert_learned(tmp_path / "a")
    r = report["results"]
    with capsys.disabled():  # `pytest -n 0 -s` shows it
        print(f"\nfrozen heads: I2T chance + {r['map_i2t'] - r['chance_i2t']:.2f}, T2I chance "
              f"+ {r['map_t2i'] - r['chance_t2i']:.2f}, distinct {report['distinct']}")  # fmt: skip
    theirs = json.loads((tmp_path / "a" / "results.json").read_text())
    best = str(tmp_path / "a" / "best.pt")
    for cached in (True, False):  # with the run's cache, then a full forward pass without it
        if not cached:
            cache.rename(tmp_path / "moved")
        caplog.clear()
        with caplog.at_level("INFO", logger="evaluate"):
            assert evaluate.main(["--checkpoint", best, "--out", str(tmp_path / f"e{cached}")]) == 0
        assert ("encoding from the feature cache" in caplog.text) == cached
        ours = json.loads((tmp_path / f"e{cached}" / "results.json").read_text())
        for key in ("map_i2t", "map_t2i", "map_i2t_tie_avg", "map_t2i_tie_avg"):
            assert abs(ours[key] - theirs[key]) < 1e-6, key
        capsys.readouterr()
        index = tmp_path / f"index{cached}"
        assert retrieve.main(["index", "--checkpoint", best, "--out", str(index)]) == 0
        assert ("encoding from the feature cache" in capsys.readouterr().err) == cached
    (tmp_path / "moved").rename(cache)
    from cmh.retrieval.index_folder import load_index

    codes = [load_index(tmp_path / f"index{c}").codes for c in (True, False)]
    assert sorted(codes[0]) == sorted(codes[1]) == ["image", "text"]
    for name in codes[0]:
        assert np.array_equal(codes[0][name], codes[1][name]), name


def test_text_only_mode(learn_prepared, tmp_path):
    """--modalities text: the T->T loss and metric alone; on the learning fixture's flags the
    text codes are diverse and T2T is above chance (checked), and evaluate.py reproduces it."""
    from conftest import LEARN_FLAGS
    from learning import assert_learned

    run = tmp_path / "run"
    assert run_train(learn_prepared, run, [*LEARN_FLAGS, "--modalities", "text"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert {"map_t2t", "map_t2t_tie_avg", "chance_t2t"} <= set(results)
    assert "map_i2t" not in results
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["i2t"] == 0 and record["t2t"] > 0
    assert_learned(run)
    assert evaluate.main(["--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "e")]) == 0
    ours = json.loads((tmp_path / "e" / "results.json").read_text())
    assert ours["map_t2t"] == results["map_t2t"]


@pytest.mark.compares
@pytest.mark.slow
@skip_compile_if_forced_isa
def test_compile_gives_the_same_training(tiny_prepared, tmp_path, compare_flags):
    """--compile (torch.compile of the training forward) on the hash layers of frozen-feature mode:
    the same per-epoch losses as eager mode, to float round-off."""
    flags = [
        *compare_flags,
        "--freeze-backbones",
        "--feature-cache",
        str(tmp_path / "f"),
        "--epochs",
        "2",
    ]
    assert run_train(tiny_prepared, tmp_path / "eager", flags) == 0
    assert_diverse(tmp_path / "eager")
    assert run_train(tiny_prepared, tmp_path / "compiled", flags, "--compile") == 0
    losses = [
        [json.loads(x)["loss"] for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
        for n in ("eager", "compiled")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
