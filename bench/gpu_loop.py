"""The whole-loop rows of bench/gpu_check.py: train.py itself, 2 epochs at the real scale.

The step rows time one step on fixed batches; these time what a user runs — loading, the
image cache, batching, the steps, validation and checkpoints — on generated data of IAPR's
size: 20,000 items (data.py demo: 2,000 query, 10,000 train, 2,000 val), trained at 224 px.
The demo images are generated at 64 px (generating 20,000 at full size would take minutes of
the check's budget) and go through the same uint8 cache at 256 px as any dataset; the step
sees 224 px crops either way. The text tower is a BERT-base-size encoder (BertConfig defaults)
from random weights, saved to a folder with a WordPiece tokenizer of the demo captions and
passed as ``--text-model FOLDER`` (the path a downloaded BERT takes).

Two runs of the reference recipe (batch 32, lr 1e-5, weight decay 5e-4, 32 bits, margin 12,
--image-cache): eager, and --cuda-graphs --resident-data. Per run: the wall time of the command,
and per epoch metrics.jsonl's ``train_seconds`` (the steps alone; epoch 1 includes building the
cache and, with --cuda-graphs, the capture) and ``seconds`` (validation and checkpoints too).
With --tiny (CPU smoke test): 200 items at 32 px and the tiny BERT, in the same folder layout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_IMAGE = {"full": 64, "tiny": 32}
PATHS = {"eager": [], "cuda graphs + resident data": ["--cuda-graphs", "--resident-data"]}


def demo_folder(folder: Path, items: int, image: int) -> Path:
    """The prepared demo dataset of ``items`` items in ``folder`` (generated once)."""
    if not (folder / "prepared" / "summary.json").is_file():
        argv = ["demo", "--out", str(folder), "--n-items", str(items), "--image-size", str(image)]
        run_checked([sys.executable, str(ROOT / "data.py"), *argv], "data.py demo")
    return folder / "prepared"


def random_bert_folder(folder: Path, prepared: Path, bert: dict) -> Path:
    """A BERT of config ``bert`` (BertConfig defaults: base size) from random weights, with a
    WordPiece tokenizer of the training captions, saved as a --text-model folder."""
    import torch
    from transformers import BertConfig, BertModel

    from cmh.data.prepared_folder import load_prepared
    from cmh.models.text_encoders import tokenizer_from_json, train_wordpiece

    if (folder / "config.json").is_file():
        return folder
    split = load_prepared(prepared)
    tokenizer = tokenizer_from_json(
        train_wordpiece(split.captions(split.splits["train"]), 8000).to_str()
    )
    torch.manual_seed(0)
    config = BertConfig(**{**bert, "vocab_size": max(len(tokenizer), bert.get("vocab_size", 0))})
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_checked(argv: list[str], what: str) -> float:
    """Run ``argv``; its wall seconds, or RuntimeError with the end of its output."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(argv)}\n{tail}")
    return time.perf_counter() - t0


def loop_rows(size: dict, folder: Path, batch: int, bf16: bool, workers: int) -> list[dict]:
    """train.py for 2 epochs per path (see the module docstring); one row per path."""
    prepared = demo_folder(folder / "demo", size["loop_items"], DEMO_IMAGE[size["name"]])
    text = random_bert_folder(folder / "bert", prepared, size["bert"])
    n_train = json.loads((prepared / "summary.json").read_text())["splits"]["train"]
    common = ["--data", str(prepared), "--epochs", "2", "--batch-size", str(batch),
              "--bits", "32", "--margin", "12", "--lr", "1e-5", "--weight-decay", "5e-4",
              "--image-size", str(size["image"]), "--image-weights", "none",
              "--text-model", str(text), "--image-cache", "--num-workers", str(workers),
              "--no-progress", *(["--amp"] if bf16 else [])]  # fmt: skip
    rows = []
    for name, flags in PATHS.items():
        out = folder / ("run-" + name.split()[0])
        argv = [sys.executable, str(ROOT / "train.py"), *common, "--out", str(out), *flags]
        wall = run_checked(argv, f"train.py ({name})")
        records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        rows.append(
            {
                "path": name,
                "command": " ".join(["python train.py", *common[2:], *flags]),
                "wall_s": wall,
                "train_s": [r["train_seconds"] for r in records],
                "epoch_s": [r["seconds"] for r in records],
                "steps_per_epoch": n_train // batch,
                "val_map_i2t": records[-1].get("val_map_i2t"),
                "val_map_t2i": records[-1].get("val_map_t2i"),
            }
        )
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return rows
