"""What a new user meets: unknown and abbreviated flags refused with a suggestion in every entry
point, every default in --help, both missing pretrained towers named in one message before any
work (and no hub retries), where a run's output went, a failed start's error in train.log,
dropped ids listed, the truncation message once per split, progress bars only on a terminal."""

from __future__ import annotations

import argparse
import json
import logging

import pytest
from conftest import LEARN_BITS

import data
import evaluate
import retrieve
import train
from cmh.data import prepare as prepare_step
from cmh.models import model_sources
from cmh.retrieval.index_folder import load_index
from cmh.utils import cli, progress

ENTRY_POINTS = {
    "train.py": (train.main, ["--bit", "16"], "--bits"),
    "data.py": (data.main, ["prepare", "--out", "x", "--n-querys", "3"], "--n-query"),
    "evaluate.py": (evaluate.main, ["--checkpoint", "x", "--batch_size", "3"], "--batch-size"),
    "retrieve.py": (retrieve.main, ["query", "--index", "x", "--text", "a", "--kk", "3"], "--k"),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_unknown_or_abbreviated_flag_is_refused_with_a_suggestion(name, capsys):
    """``--bit 16`` is not taken as ``--bits 16`` (argparse's prefix matching is off) and the
    error names the flag meant; ``--batch_size`` suggests ``--batch-size``."""
    main, argv, meant = ENTRY_POINTS[name]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"did you mean {meant}" in err, err
    assert "--help lists every flag" in err


def test_suggestions_prefer_the_exact_spelling():
    known = ["--bits", "--batch-size", "--image-size", "--out", "--epochs"]
    assert cli.suggestions("--batch_size", known) == ["--batch-size"]
    assert cli.suggestions("--bit", known) == ["--bits"]
    assert cli.suggestions("--epoch=3", known) == ["--epochs"]
    assert cli.suggestions("--zzz", known) == []


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        elif action.option_strings and action.dest != "help":
            yield parser, action


PARSERS = {
    "train.py": train._parser,
    "evaluate.py": lambda: _capture_parser(evaluate.parse_args, ["--checkpoint", "x"]),
    "retrieve.py": lambda: _capture_parser(
        retrieve.parse_args, ["index", "--checkpoint", "x", "--out", "y"]
    ),  # fmt: skip
    "data.py": lambda: _capture_parser(data.parse_args, ["demo", "--out", "x"]),
}


def _capture_parser(parse, argv) -> argparse.ArgumentParser:
    """The parser a parse_args function builds (grabbed from its parse_args call)."""
    seen = []
    real = cli.Parser.parse_args

    def grab(self, args=None, namespace=None):
        seen.append(self)
        return real(self, args, namespace)

    cli.Parser.parse_args = grab
    try:
        parse(argv)
    finally:
        cli.Parser.parse_args = real
    return seen[0]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_default_is_shown_in_help(name):
    """Every flag with a default has it in --help: either its help states it ("default ...",
    for defaults that depend on other flags) or the formatter appends "(default: X)". Flags
    whose default is None say theirs in words where they have one (train.py's --bits: 32)."""
    parser = PARSERS[name]()
    assert parser.allow_abbrev is False
    missing = []
    for owner, action in _actions(parser):
        text = owner.formatter_class(owner.prog)._get_help_string(action)
        switch = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        has_default = action.default not in (None, argparse.SUPPRESS) and not switch
        if has_default and "default" not in text.lower():
            missing.append(action.option_strings[0])
    assert not missing, f"{name}: no default shown for {missing}"


def test_help_is_grouped():
    titles = [g.title for g in train._parser()._action_groups]
    for title in ("data and run", "model", "loss", "optimisation", "frozen features",
                  "hardware and distributed"):  # fmt: skip
        assert title in titles


# --------------------------------------------------------------------------- offline towers
@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No host reachable, empty torch and Hugging Face caches; any hub download attempt fails
    the test (it would be the minute of retries the check exists to avoid)."""
    monkeypatch.setattr(model_sources, "reachable", lambda host, timeout=3.0: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import transformers

    def no_download(*args, **kwargs):
        raise AssertionError("from_pretrained called although the model is known to be missing")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_download)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_download)


def test_offline_both_towers_are_named_in_one_message(offline, tiny_prepared, tmp_path, capsys):
    """The default towers offline: one message names the ImageNet weights and the text model,
    with what to pass instead, before the run folder exists."""
    out = tmp_path / "run"
    assert train.main(["--data", str(tiny_prepared), "--out", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "2 pretrained models are missing" in err
    assert "--image-weights imagenet" in err and "--image-weights none" in err
    assert "--text-model bert-base-uncased" in err and "--text-model tiny" in err
    assert not out.exists()


def test_offline_one_tower_missing(offline, tiny_prepared, tmp_path, capsys):
    argv = ["--data", str(tiny_prepared), "--out", str(tmp_path / "r"), "--image-weights", "none"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert "a pretrained model is missing" in err and "--text-model bert-base-uncased" in err
    assert "--image-weights" not in err


def test_available_sources_pass(monkeypatch, tmp_path):
    """A cached weight file, a local text-model folder and a reachable host are all fine."""
    monkeypatch.setattr(model_sources, "reachable", lambda host, timeout=3.0: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    weights = model_sources.torchvision_weights_file(url)
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"x")
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    model_sources.check_towers("imagenet", url, str(folder))
    with pytest.raises(model_sources.UserError, match="has no config.json"):
        model_sources.check_towers(None, None, str(tmp_path))
    monkeypatch.setattr(model_sources, "reachable", lambda host, timeout=3.0: True)
    weights.unlink()
    model_sources.check_towers("imagenet", url, "some/hub-model")  # downloadable


# --------------------------------------------------------------------------- where output went
def test_outputs_say_where_they_went(learned_run, tmp_path, capsys):
    """evaluate.py prints the checkpoint, its epoch, the files written and the next command;
    retrieve.py index and query --html print theirs; a finished run logged its folder."""
    log = (learned_run / "train.log").read_text()
    assert f"run folder {learned_run} (best epoch" in log
    assert f"next: python evaluate.py --checkpoint {learned_run / 'best.pt'}" in log
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(learned_run / "best.pt"), "--out", str(out), "--no-progress"]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    epoch = json.loads((learned_run / "results.json").read_text())["best_epoch"]
    assert f"checkpoint {learned_run / 'best.pt'} (epoch {epoch}, {LEARN_BITS} bits)" in printed
    for name in ("results.json", "pr_curve.png", "precision_at_n.png"):
        assert str(out / name) in printed and (out / name).is_file()
    assert "next: python retrieve.py index" in printed
    index = tmp_path / "index"
    argv = ["index", "--checkpoint", str(learned_run / "best.pt"), "--out", str(index)]
    assert retrieve.main(argv) == 0
    assert f"into {index}" in capsys.readouterr().out
    page = tmp_path / "page.html"
    first = load_index(index).items["ids"][0]
    assert (
        retrieve.main(["query", "--index", str(index), "--item", str(first), "--html", str(page)])
        == 0
    )
    assert f"wrote {page}" in capsys.readouterr().err and page.is_file()


def test_failed_start_says_why_and_leaves_no_folder(tiny_prepared, tiny_flags, tmp_path, capsys):
    """An error after the run folder was made (here: no such data folder) is printed last, and
    the folder the start made is gone (a rerun with the right --data starts clean)."""
    out = tmp_path / "run"
    argv = ["--data", str(tmp_path / "nothing"), "--out", str(out), *tiny_flags]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    message = err.strip().splitlines()[-1]
    assert message.startswith("error:") and "nothing" in message
    assert not out.exists()


def test_refused_restart_leaves_the_old_log_alone(learned_run, capsys):
    """A start refused because the folder holds a run must not write into that run's log."""
    before = (learned_run / "train.log").read_text()
    assert train.main(["--data", "x", "--out", str(learned_run)]) == 2
    assert "error:" in capsys.readouterr().err
    assert (learned_run / "train.log").read_text() == before


def test_dropped_ids_are_listed():
    summary = {"dropped": [{"id": i, "reason": "no labels"} for i in range(7)]}
    text = prepare_step.dropped_ids(summary)
    assert "ids 0 (no labels), 1 (no labels)" in text and "4 (no labels) and 2 more" in text
    assert "5 (no labels)" not in text
    assert prepare_step.dropped_ids({"dropped": []}) == ""


def test_truncation_is_reported_once_per_split(tiny_prepared, caplog):
    from models import tokenizer_from_json, train_wordpiece

    prepared = data.load_prepared(tiny_prepared)
    backend = train_wordpiece(prepared.captions(prepared.splits["train"]), 200)
    tokenizer = tokenizer_from_json(backend.to_str())
    with caplog.at_level(logging.INFO, logger="data"):
        for _ in range(3):
            data.HashingDataset(prepared, "val", tokenizer, max_length=4, images=False)
        data.HashingDataset(prepared, "query", tokenizer, max_length=4, images=False)
    lines = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith("val:") and lines[1].startswith("query:")


def test_progress_bars_only_on_a_terminal(monkeypatch):
    import sys

    try:
        progress.configure(None)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
        assert not progress.enabled()
        assert progress.bar(range(3), "x").disable
        progress.configure(True)
        assert progress.enabled() and not progress.bar(range(3), "x").disable
        progress.configure(False)
        assert not progress.enabled()
    finally:
        progress.configure(None)


def test_a_captured_run_has_no_escape_sequences(tiny_prepared, tiny_flags, tmp_path, capfd):
    """Output captured to a pipe (no terminal) carries no progress-bar escape sequences; with
    --progress the bars are drawn (so the check can fail)."""
    argv = ["--data", str(tiny_prepared), *tiny_flags, "--epochs", "1"]
    assert train.main([*argv, "--out", str(tmp_path / "a")]) == 0
    captured = capfd.readouterr()
    assert "\r" not in captured.err + captured.out and "\x1b[" not in captured.err
    try:
        assert train.main([*argv, "--out", str(tmp_path / "b"), "--progress"]) == 0
    finally:
        progress.configure(None)
    assert "\r" in capfd.readouterr().err


def test_the_demo_says_how_to_run_it_again(tmp_path):
    from cmh.runs.run_folder import where_it_went

    (tmp_path / "best.pt").write_bytes(b"")
    plain = where_it_went(tmp_path, 8, demo=True, given=["demo", "progress"])
    assert f"again: python train.py --demo --out {tmp_path}-2" in plain
    other = where_it_went(tmp_path, 8, demo=True, given=["demo", "backbone", "clip_model"])
    assert f"again: the same command with --out {tmp_path}-2" in other
    assert "again" not in where_it_went(tmp_path, 8, demo=False, given=["data"])
