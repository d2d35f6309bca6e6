"""The data-source registry: an input registered from outside the package (this file) is
prepared through data.main; --help lists the sources; flags of two inputs are refused by name."""

from __future__ import annotations

import json

import pytest

import data
from cmh.data.sources import registry
from cmh.data.sources.registry import DataSource, register_source


@pytest.fixture
def toy_source(monkeypatch):
    """A source named by --images alone, whose items are written by its prepare function."""
    calls = []

    def prepare(config):
        calls.append(config)
        config.out.mkdir(parents=True, exist_ok=True)  # made (and locked) by prepare
        (config.out / "toy.json").write_text(json.dumps({"seed": config.seed}))
        return {"items": 0}

    # --images names it before the lists input (order 0), and it accepts --n-query
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    register_source(DataSource("toy", "a toy input", selects=("images",), accepts=("n_query",),
                               prepare=prepare, order=0))  # fmt: skip
    return calls


def test_a_registered_source_is_prepared_through_data_main(toy_source, tmp_path):
    out = tmp_path / "prepared"
    assert data.main(["prepare", "--images", "x", "--n-query", "3", "--out", str(out)]) == 0
    assert [str(c.images) for c in toy_source] == ["x"] and toy_source[0].n_query == 3
    assert json.loads((out / "toy.json").read_text()) == {"seed": 0}


def test_flags_of_another_input_are_refused_by_name(toy_source, tmp_path, capsys):
    assert data.main(["prepare", "--images", "x", "--lists", "y", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--images and --lists do not go together: --images names the toy input" in err
    assert toy_source == []


def test_help_lists_the_sources(toy_source, capsys):
    with pytest.raises(SystemExit):
        data.main(["prepare", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name, main in (("twemoji", "--twemoji"), ("mat", "--mat"), ("raw", "--iapr-root"),
                       ("lists", "--lists"), ("toy", "--images")):  # fmt: skip
        assert f"{name} ({main}): " in shown


def test_a_flag_without_its_input_names_the_input(tmp_path, capsys):
    assert data.main(["prepare", "--protocol", "clip", "--out", str(tmp_path)]) == 2
    assert "--protocol goes with --mat" in capsys.readouterr().err


def test_a_source_needs_a_way_to_be_read():
    broken = DataSource("broken", "x", selects=("x",))  # constructing is fine
    with pytest.raises(ValueError, match="give prepare, or plan and stage_images"):
        register_source(broken)
