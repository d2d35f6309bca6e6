"""The README's demo numbers and the retrieval examples of the README and docs/ are what the code
prints today, and the README's fresh-machine commands are what CI runs.

One ``python train.py --demo`` (doc_demo.demo_run; under `.ci/run`, the one CI has just run as
the README's first command) is compared with the README. The demo repeats exactly on one machine
(crops and flips are drawn from seed, epoch and item), but other CPU instruction sets round
differently, so its mAPs are compared within doc_demo.MAP_TOLERANCE; exact equality is demanded
only between two runs on this machine (training's final evaluation and ``evaluate.py`` on its
checkpoint), and the retrieved ids only when this machine prints the README's digits exactly (the
same kernels).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex

import pytest
from doc_demo import (
    DEMO_DIR_VAR,
    MAP_TOLERANCE,
    PAGES,
    README,
    ROOT,
    demo_results,
    demo_run,
    demo_table,
    page_name,
    printed_digits,
    readme_threads,
    same_kernels_as_readme,
    sessions,
)
from learning import assert_learned

import evaluate
import retrieve

REPO_PLACEHOLDER = "/path/to/repo"  # the README's stand-in for the clone's absolute path
README_TEXT = README.read_text(encoding="utf-8")


# the whole module (its tests run on one worker: --dist loadfile) on the threads the demo was
# trained with, so evaluate and retrieve print what the README shows
@pytest.fixture(scope="module", autouse=True)
def threads_as_the_readme():
    with readme_threads():
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_run(tmp_path_factory)


def retrieve_sessions() -> list[tuple[str, str, list[str]]]:
    """(page, command, printed lines) of every ``$ python retrieve.py`` line shown on the demo
    run (``runs/demo``), README first: its ``index`` builds what the later queries search."""
    found = []
    for page in PAGES:
        for command, printed in sessions(page.read_text(encoding="utf-8")):
            serves = command.startswith("python retrieve.py serve")  # runs until Ctrl-C: not here
            if command.startswith("python retrieve.py ") and "runs/demo/" in command and not serves:
                found.append((page_name(page), command, printed))
    return found


@pytest.fixture(scope="module")
def retrieved(demo):
    """(page, command, the lines the page shows, the lines printed now) of every shown
    retrieve.py command on the demo run, run once, in order, in the demo's folder."""
    found = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo)
        for page, command, expected in retrieve_sessions():
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                assert retrieve.main(shlex.split(command)[2:]) == 0, (page, command)
            out = stdout.getvalue().replace(str(demo.resolve()), REPO_PLACEHOLDER)
            found.append((page, command, expected, out.rstrip("\n").splitlines()))
    return found


def test_ci_runs_the_readme_commands_verbatim():
    lines = (ROOT / ".ci/run").read_text().splitlines()
    ci = [line for line in lines if line.startswith("python -m venv")]
    assert len(ci) == 2
    demo, tests = ci
    assert demo.endswith("&& python train.py --demo") and tests.endswith("&& pytest")
    for line in ci:
        assert f"\n$ {line}\n" in README_TEXT, line
    assert README_TEXT.index(demo) < README_TEXT.index(tests)  # "in this order"
    # the tests check the demo CI has just run (doc_demo.DEMO_DIR_VAR) instead of training it again
    between = lines[lines.index(demo) + 1 : lines.index(tests)]
    assert f'export {DEMO_DIR_VAR}="$PWD"' in between


def test_the_readme_is_one_page():
    assert len(README_TEXT.splitlines()) <= 250


def test_the_demo_numbers_hold_within_the_isa_tolerance(demo):
    shown = demo_table(README_TEXT)
    results = demo_results(demo)
    assert set(shown) == {"I2T", "T2I"}
    for direction, (m, tie_avg, chance) in shown.items():
        d = direction.lower()
        assert abs(results[f"map_{d}"] - float(m)) <= MAP_TOLERANCE, (direction, results)
        assert abs(results[f"map_{d}_tie_avg"] - float(tie_avg)) <= MAP_TOLERANCE, direction
        # chance depends on the labels and the split alone, not on any kernel
        assert f"{results[f'chance_{d}']:.4f}" == chance, direction
    row = re.search(
        r"^\| demo \(generated[^|]*\| 32 \|[^|]*\| (\S+) \| (\S+) \| (\S+) \|", README_TEXT, re.M
    )
    assert row is not None, "the Results table has a demo row"
    assert row.groups() == (shown["I2T"][0], shown["T2I"][0], shown["I2T"][2])


def test_the_tolerance_covers_the_spread_the_readme_states():
    """The README names the other instruction sets' numbers; each is within the tolerance."""
    shown = demo_table(README_TEXT)
    section = README_TEXT.split("**The same digits on every run, not on every CPU.**")[1]
    section = section.split("\n## ")[0]
    others = re.findall(r"I2T (0\.\d{4}) / T2I (0\.\d{4})", section)
    assert len(others) >= 2, "the README states the AVX2 run's and the other machine's numbers"
    for i2t, t2i in others:
        assert abs(float(i2t) - float(shown["I2T"][0])) <= MAP_TOLERANCE
        assert abs(float(t2i) - float(shown["T2I"][0])) <= MAP_TOLERANCE
    assert f"within **{MAP_TOLERANCE:g}**" in section


@pytest.mark.compares
def test_evaluate_prints_what_training_printed_on_this_machine(demo, capsys):
    """Two runs on one machine, exactly: the README's evaluate.py command rebuilds the model
    from best.pt alone and prints the numbers training printed, to the last digit (of a run
    that learned: checked first)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo)
        # codes gather by label set as the demo learns: 6% / 9% of its 1,500 items have image
        # / text codes of their own (measured); a constant tower gives one code to all
        assert_learned(demo / "runs/demo", least=0.03)
        assert evaluate.main(["--checkpoint", "runs/demo/best.pt"]) == 0
    again = json.loads((demo / "runs/demo/eval/results.json").read_text())
    first = demo_results(demo)
    for key in ("map_i2t", "map_t2i", "map_i2t_tie_avg", "map_t2i_tie_avg", "chance_i2t"):
        assert again[key] == first[key], key
    assert "I2T" in capsys.readouterr().out


def test_the_retrieval_examples_run_and_show_the_demo_data(retrieved):
    """Every shown retrieve.py command runs on the demo; what does not depend on the CPU's
    kernels (the query line, the header, the number of rows) is compared on any machine."""
    kinds = [shlex.split(command)[2] for _, command, _, _ in retrieved]
    assert kinds.count("index") >= 1 and kinds.count("add") >= 1 and kinds.count("query") >= 3, kinds
    def rows(lines):  # the tie line ("+N more at distance D") depends on the codes: not counted
        return [line for line in lines if not line.startswith("+")]

    for page, command, expected, printed in retrieved:
        assert len(rows(printed)) == len(rows(expected)), (page, command, printed)
        if shlex.split(command)[2] == "query":
            assert printed[0] == expected[0], (page, command)  # the query and the database
            assert printed[1] == expected[1], (page, command)  # the header


def test_the_retrieval_examples_are_what_retrieve_prints(demo, retrieved):
    """The retrieved ids, distances and captions, exactly, on a machine with the kernels that
    printed the README's demo digits (otherwise the ids differ as the mAPs do)."""
    if not same_kernels_as_readme(demo):
        pytest.skip(
            "this machine's demo printed "
            f"{printed_digits(demo_results(demo))}, not the README's {demo_table(README_TEXT)} "
            "(other CPU kernels): the retrieved ids are compared only where the digits match"
        )
    for page, command, expected, printed in retrieved:
        assert printed == expected, (page, command)


@pytest.mark.compares
def test_the_readme_python_example_runs_and_ranks_as_the_command_line(demo, retrieved, capsys):
    """The README's Python block, run in the demo's folder after its commands: the rows it
    prints are those `retrieve.py query` prints for the same text (learned demo codes)."""
    block = README_TEXT.split("```python\n")[1].split("```")[0]
    text = re.search(r'by_text\("([^"]+)", k=(\d+)\)', block)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(demo)
        assert_learned(demo / "runs/demo", least=0.03)  # as test_evaluate_prints_what_training...
        capsys.readouterr()
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 (the README's own example)
        shown = capsys.readouterr().out
        argv = ["query", "--index", "runs/demo/photos", "--text", text[1], "--k", text[2]]
        assert retrieve.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    cli = [(line.split()[1], int(line.split()[2])) for line in lines if line[:1] == " "]
    assert shown.strip() == str(cli) and len(cli) == int(text[2])


def test_the_results_table_points_at_its_numbers():
    """Each number of the README's results table is on the page its row links to (the README
    itself for the demo), so the summary cannot drift from the details."""
    table = README_TEXT.split("\n## Results\n")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "](" in line]
    assert len(rows) >= 6
    for row in rows:
        target = re.search(r"\]\(([^)#]*)(#[^)]*)?\)", row.split("|")[-2]).group(1)
        text = README_TEXT if not target else (ROOT / target).read_text(encoding="utf-8")
        for number in re.findall(r"\d\.\d{4}(?: ± \d\.\d{4})?", row):
            elsewhere = text.replace(row, "") if not target else text
            assert number in elsewhere, (number, target or "README.md", row[:60])


def test_the_session_parser_reads_commands_and_their_output():
    text = "```\n$ python retrieve.py a\none\ntwo\n$ ls \\\n  -l\nx\n$ python retrieve.py b\n```\n"
    assert sessions(text) == [
        ("python retrieve.py a", ["one", "two"]),
        ("ls -l", ["x"]),
        ("python retrieve.py b", []),
    ]
