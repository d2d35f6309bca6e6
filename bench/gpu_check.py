"""One prepared GPU check: full-size training throughput, peak memory, loss and evaluation time.

    python bench/gpu_check.py --out runs/gpu_check.json       # on a CUDA machine, < 8 minutes
    python bench/gpu_check.py --tiny --out /tmp/g.json        # CPU smoke run, seconds (auto on CPU)

Training step (forward, triplet loss, backward, Adam) of both towers: ResNet-18 at 224 px and a
BERT-base-size encoder (transformers.BertConfig defaults: 12 layers, width 768, vocabulary 30522;
random init: the same compute as the pretrained weights, no download) at 40 tokens, 32 bits.
For batch 32 and 128, float32 and bf16 autocast, and two inputs: synthetic tensors already on the
device, and the uint8-cache loader path (image_cache.CachedImageDataset over a generated demo
dataset, 4 workers, pinned memory, non_blocking copy, image_cache.gpu_transform on the device).
Per row: ms/step and pairs/s (median over the timed steps, after warm-up), peak GPU memory
(torch.cuda.max_memory_allocated), the last loss, and the projected wall time of 300 epochs over
10,000 pairs (training steps alone, evaluation excluded). Then metrics.mean_average_precision of
random 64-bit codes, 2,000 queries x 18,000 database items, both tie policies, timed.
Output: a markdown table on stdout and a JSON file (--out).

Precision of the float32 rows is set explicitly, for matmuls and cuDNN convolutions together:
--no-tf32 (the default) sets torch.backends.cuda.matmul.allow_tf32 and
torch.backends.cudnn.allow_tf32 to False (true float32); --tf32 sets both to True. The settings
torch reports back are printed in the header, in each fp32 row's label and in the JSON. (torch's
own defaults, which train.py leaves alone, are a mix: convolutions TF32, matmuls float32.)

--tiny (automatic without CUDA): image 32, a 2-layer width-64 BERT, batches 4 and 8, 2 timed
steps, evaluation 50 x 300; for tests/test_gpu_check.py.

Status: run on one NVIDIA H200 (torch 2.11.0+cu130, 16 CPUs) on 2026-11-28, 52 s, and once more
with --compile (batch 128, bf16; 140 s), both before --tf32/--no-tf32 existed (torch's default
precision); the tables are in BENCHMARKS.md. At batch 32 a step is
bound by the Python/launch side (float32 ~ bf16), so rows there vary between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import TINY_BERT  # noqa: E402

FULL = {
    "image": 224,
    "bert": {},
    "batches": (32, 128),
    "steps": 10,
    "warmup": 3,
    "eval": (2000, 18000),
    "workers": 4,
    "items": 2400,
}
TINY = {
    "image": 32,
    "bert": TINY_BERT,  # the --text-model tiny architecture
    "batches": (4, 8),
    "steps": 2,
    "warmup": 1,
    "eval": (50, 300),
    "workers": 0,
    "items": 60,
}
TOKENS, TRAIN_BITS, EVAL_BITS, N_LABELS = 40, 32, 64, 255


def build(size: dict, device: torch.device):
    """CrossModalHasher (ResNet-18 + BERT of ``size``, random init) and its Adam, seed 0."""
    from transformers import BertConfig, BertModel

    from cmh.image_backbones import build_backbone
    from models import CrossModalHasher, ImageHasher, ModelConfig, TextHasher

    torch.manual_seed(0)
    cfg = ModelConfig(bits=TRAIN_BITS, image_weights="none", image_size=size["image"])
    bert = BertModel(BertConfig(**size["bert"]), add_pooling_layer=False)
    backbone, width = build_backbone("resnet18", None, size["image"])
    model = CrossModalHasher(
        cfg, ImageHasher(TRAIN_BITS, backbone, width=width), TextHasher(TRAIN_BITS, bert)
    )
    model.to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=5e-4)


def synthetic_batches(size: dict, batch: int, device: torch.device):
    """An endless iterator of one fixed synthetic batch on ``device``."""
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(batch, N_LABELS, generator=g) < 4 / N_LABELS).float()
    labels[torch.arange(batch), torch.arange(batch) % 8] = 1.0  # >= 1 label; dissimilar pairs
    fixed = {
        "image": torch.randn(batch, 3, size["image"], size["image"], generator=g),
        "input_ids": torch.randint(1000, 30000, (batch, TOKENS), generator=g),
        "attention_mask": torch.ones(batch, TOKENS, dtype=torch.long),
        "labels": labels,
    }
    fixed = {k: v.to(device) for k, v in fixed.items()}
    while True:
        yield fixed


def demo_data(folder: Path, items: int):
    """A generated prepared dataset of ``items`` items (data.py demo) and a WordPiece tokenizer."""
    import data
    from models import tokenizer_from_json, train_wordpiece

    if not (folder / "prepared" / "summary.json").is_file():
        argv = ["demo", "--out", str(folder), "--n-items", str(items), "--image-size", "96"]
        if data.main(argv) != 0:
            raise RuntimeError(f"could not generate the demo dataset in {folder}")
    prepared = data.load_prepared(folder / "prepared")
    tok = train_wordpiece(prepared.captions(prepared.splits["train"]), 2000)
    return prepared, tokenizer_from_json(tok.to_str())


def loader_batches(prepared, tokenizer, size: dict, batch: int, device: torch.device):
    """Endless training batches through the uint8-cache path, "image" made on ``device``."""
    from cmh.image_cache import CachedImageDataset, cached_loader, gpu_transform

    ds = CachedImageDataset(
        prepared,
        "train",
        tokenizer,
        TOKENS,
        size["image"],
        train=True,
        build_workers=size["workers"],
    )
    loader = cached_loader(
        ds,
        batch,
        shuffle=True,
        seed=0,
        num_workers=size["workers"],
        drop_last=True,
        pad_id=tokenizer.pad_token_id,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise RuntimeError(f"{len(ds)} training items < batch {batch}")
    while True:
        for b in loader:
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            b["image"] = gpu_transform(b.pop("image_u8"), size["image"], train=True)
            yield b


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_row(model, optimizer, batches, device, bf16: bool, size: dict) -> dict:
    """Median seconds per step, last loss and peak memory over warm-up + timed steps."""
    from loss import hashing_loss

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], float("nan")
    for i in range(size["warmup"] + size["steps"]):
        sync(device)
        t0 = time.perf_counter()
        batch = next(batches)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            codes = model(batch)
        out = hashing_loss(codes["image"], codes["text"], batch["labels"], 12.0)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        sync(device)
        if i >= size["warmup"]:
            times.append(time.perf_counter() - t0)
            loss = float(out["loss"].detach())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"s_per_step": float(np.median(times)), "loss": loss, "peak_gib": peak}


def set_tf32(enabled: bool) -> dict:
    """Set TF32 for float32 matmuls and cuDNN convolutions; return what torch then reports."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return precision_settings()


def precision_settings() -> dict:
    """The float32 precision settings as torch reports them."""
    return {
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def fp32_label(settings: dict) -> str:
    """``"fp32 (matmul TF32|fp32, conv TF32|fp32)"`` from :func:`precision_settings`."""
    matmul = "TF32" if settings["torch.backends.cuda.matmul.allow_tf32"] else "fp32"
    conv = "TF32" if settings["torch.backends.cudnn.allow_tf32"] else "fp32"
    return f"fp32 (matmul {matmul}, conv {conv})"


def training_rows(
    size: dict, device: torch.device, data_dir: Path, precisions, compile_model: bool = False
) -> list[dict]:
    prepared, tokenizer = demo_data(data_dir, size["items"])
    rows = []
    for batch in size["batches"]:
        for bf16 in [p == "bf16" for p in precisions]:
            for source in ("synthetic", "uint8 cache loader"):
                model, optimizer = build(size, device)
                if compile_model:  # compiled during the warm-up steps, which are not timed
                    model = torch.compile(model)
                batches = (
                    synthetic_batches(size, batch, device)
                    if source == "synthetic"
                    else loader_batches(prepared, tokenizer, size, batch, device)
                )
                r = time_row(model, optimizer, batches, device, bf16, size)
                pairs_s = batch / r["s_per_step"]
                label = "bf16" if bf16 else fp32_label(precision_settings())
                precision = label + (" compiled" if compile_model else "")
                rows.append(
                    {
                        "batch": batch,
                        "precision": precision,
                        "input": source,
                        **r,
                        "pairs_per_s": pairs_s,
                        "hours_300_epochs_10k": 300 * 10_000 / pairs_s / 3600,
                    }
                )
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
                del model, optimizer, batches
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def eval_rows(n_query: int, n_db: int) -> list[dict]:
    """Seconds of metrics.mean_average_precision on random 64-bit codes, both tie policies."""
    from cmh.hamming_metrics import mean_average_precision

    rng = np.random.default_rng(0)
    codes = [
        np.where(rng.random((n, EVAL_BITS)) < 0.5, -1, 1).astype(np.int8) for n in (n_query, n_db)
    ]
    labels = [
        (rng.random((n, N_LABELS)) < 4 / N_LABELS).astype(np.float32) for n in (n_query, n_db)
    ]
    rows = []
    for ties in ("index", "average"):
        t0 = time.perf_counter()
        value = mean_average_precision(codes[0], codes[1], labels[0], labels[1], ties=ties)
        rows.append(
            {
                "queries": n_query,
                "database": n_db,
                "bits": EVAL_BITS,
                "ties": ties,
                "seconds": time.perf_counter() - t0,
                "map": value,
            }
        )
    return rows


def machine(device: torch.device) -> dict:
    info = {
        "platform": f"{platform.machine()} {platform.system()}",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def markdown(result: dict) -> str:
    gib = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"machine: {result['machine']}; tiny: {result['tiny']}",
        f"precision ({'--tf32' if result['tf32'] else '--no-tf32'}): fp32 rows "
        + ", ".join(f"{k}={v!r}" for k, v in result["precision"].items())
        + "; bf16 rows: torch.autocast(dtype=torch.bfloat16)",
        "",
        "| batch | precision | input | ms/step | pairs/s | peak GiB | loss | 300 ep x 10k pairs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["training"]:
        lines.append(
            f"| {r['batch']} | {r['precision']} | {r['input']} | {r['s_per_step'] * 1e3:.1f} "
            f"| {r['pairs_per_s']:.1f} | {gib(r['peak_gib'])} | {r['loss']:.4f} "
            f"| {r['hours_300_epochs_10k']:.2f} h |"
        )
    lines += ["", "| queries x database | bits | ties | seconds | mAP |", "|---|---|---|---|---|"]
    for r in result["evaluation"]:
        lines.append(
            f"| {r['queries']} x {r['database']} | {r['bits']} | {r['ties']} "
            f"| {r['seconds']:.2f} | {r['map']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    from cmh.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__)
    p.add_argument("--out", default="runs/gpu_check.json", help="JSON file of the results")
    p.add_argument("--tiny", action="store_true", help="small sizes (automatic without CUDA)")
    p.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 32 128; tiny 4 8)")
    p.add_argument(
        "--precisions",
        nargs="+",
        choices=("fp32", "bf16"),
        default=["fp32", "bf16"],
        help="float32 and/or bf16 autocast rows",
    )
    p.add_argument("--data-dir", help="folder for the generated demo data (default: a temp dir)")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the model (train.py --compile)"
    )
    p.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="TF32 for float32 matmuls and cuDNN convolutions (default --no-tf32: true float32)",
    )
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type != "cuda"
    size = {**(TINY if tiny else FULL), **({"batches": args.batches} if args.batches else {})}
    t0 = time.perf_counter()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        settings = set_tf32(args.tf32)
        print(f"precision: {settings}", file=sys.stderr, flush=True)
        with contextlib.ExitStack() as stack:
            folder = args.data_dir or stack.enter_context(tempfile.TemporaryDirectory())
            training = training_rows(size, device, Path(folder), args.precisions, args.compile)
    finally:  # leave the process as it was (tests run main() in-process)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    result = {
        "machine": machine(device),
        "tiny": tiny,
        "tf32": args.tf32,
        "precision": settings,
        "config": {**size, "tokens": TOKENS},
        "training": training,
        "evaluation": eval_rows(*size["eval"]),
    }
    result["seconds"] = time.perf_counter() - t0
    print(markdown(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
