"""One prepared GPU check: training step rates (eager and CUDA graphs), several processes at
once, train.py's whole loop at the real scale, and the evaluation time.

    python bench/gpu_check.py --out runs/gpu_check.json       # on a CUDA machine
    python bench/gpu_check.py --tiny --out /tmp/g.json        # CPU smoke run (auto on CPU)

1. Step rows (bench/gpu_steps.py): forward, triplet loss, backward, Adam of both towers —
   ResNet-18 at 224 px and a BERT-base-size encoder (BertConfig defaults, random init: the
   compute of the pretrained weights, no download) at 40 tokens, 32 bits. For batch 32 and 128,
   float32 and bf16 autocast, two step paths and two inputs each: eager (train.py's default
   loop) on synthetic tensors already on the device and through the uint8-cache loader
   (4 workers, pinned memory, image_cache.gpu_transform on the device); and the static step of
   train.py --cuda-graphs (cmh.engine.graph_step: captured once, replayed) on synthetic tensors and on
   train.py --resident-data's batches (cmh.data.caches.resident_batches: the split's uint8 cache on the
   device). Per row: ms/step (median over the timed steps after warm-up, the device
   synchronised around each), "vs eager" (the eager synthetic row of the same batch and
   precision, this run, over this row), pairs/s, peak GPU memory, the last loss, and the
   projected time of 300 epochs over 10,000 pairs (steps alone).
2. Concurrency rows (bench/gpu_parallel.py): 1 and --parallel N processes at once (as
   scripts/run_all_bits.sh --parallel N runs them), each timing its steps after a barrier;
   their summed pairs/s and the projected 16/32/64 x 3-seed table (9 runs of 300 epochs).
3. Loop rows (bench/gpu_loop.py): train.py itself for 2 epochs on 20,000 generated items at
   224 px with a random BERT-base-size text model, eager and --cuda-graphs --resident-data, at
   the first batch size and precision (train.py's own float32 settings).
4. metrics.mean_average_precision of random 64-bit codes, 2,000 x 18,000, both tie policies.
Output: markdown tables on stdout and a JSON file (--out).

Precision of the float32 step rows is set explicitly, for matmuls and cuDNN convolutions
together: --no-tf32 (the default) sets torch.backends.cuda.matmul.allow_tf32 and
torch.backends.cudnn.allow_tf32 to False (true float32); --tf32 sets both to True. The settings
torch reports back are printed in the header, in each fp32 row's label and in the JSON. (torch's
own defaults, which train.py leaves alone, are a mix: convolutions TF32, matmuls float32.)

--tiny (automatic without CUDA): image 32, a 2-layer width-64 BERT, batches 4 and 8, 2 timed
steps, 100 items in the loop, evaluation 50 x 300; for tests/bench/test_gpu_check.py. Without CUDA
the static rows run uncaptured ("static, not captured"): their times say nothing about graphs.

Status: the eager step rows ran on one NVIDIA H200 (torch 2.11.0+cu130, 16 CPUs) on 2026-11-28
(docs/gpu.md; measured rows in docs/benchmarks.md). The graph, concurrency and loop rows have not run on a GPU yet (no GPU was lent
to the session that wrote them); they run on the CPU in tests/bench/test_gpu_check.py.
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

import gpu_loop
import gpu_parallel
import gpu_steps as steps
import numpy as np
import torch
from gpu_steps import FULL, N_LABELS, TINY, TOKENS

EVAL_BITS = 64


def demo_data(folder: Path, items: int):
    """A generated prepared dataset of ``items`` items (data.py demo) and a WordPiece tokenizer."""
    from cmh.data.prepared_folder import load_prepared
    from cmh.models.text_encoders import tokenizer_from_json, train_wordpiece
    from cmh.utils.entry_points import run_entry_point

    if not (folder / "prepared" / "summary.json").is_file():
        argv = ["demo", "--out", str(folder), "--n-items", str(items), "--image-size", "96"]
        if run_entry_point("data", argv) != 0:
            raise RuntimeError(f"could not generate the demo dataset in {folder}")
    prepared = load_prepared(folder / "prepared")
    tok = train_wordpiece(prepared.captions(prepared.splits["train"]), 2000)
    return prepared, tokenizer_from_json(tok.to_str())


def cached_dataset(prepared, tokenizer, size: dict):
    """The training split as image_cache.CachedImageDataset (the uint8 cache, built once)."""
    from cmh.data.caches.uint8_cache import CachedImageDataset

    return CachedImageDataset(prepared, "train", tokenizer, TOKENS, size["image"], train=True,
                              build_workers=size["workers"])  # fmt: skip


def loader_batches(prepared, tokenizer, size: dict, batch: int, device: torch.device):
    """Endless training batches through the uint8-cache path, "image" made on ``device``."""
    from cmh.data.caches.uint8_cache import cached_loader, gpu_transform

    ds = cached_dataset(prepared, tokenizer, size)
    loader = cached_loader(ds, batch, shuffle=True, seed=0, num_workers=size["workers"],
                           drop_last=True, pad_id=tokenizer.pad_token_id,
                           pin_memory=device.type == "cuda")  # fmt: skip
    if len(loader) == 0:
        raise RuntimeError(f"{len(ds)} training items < batch {batch}")
    while True:
        for b in loader:
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            b["image"] = gpu_transform(b.pop("image_u8"), size["image"], train=True)
            yield b


def resident_batches(prepared, tokenizer, size: dict, batch: int, device: torch.device):
    """Endless batches of train.py --resident-data (cmh.data.caches.resident_batches: the split's uint8
    cache on ``device``, crops and flips there), and the static text length."""
    from cmh.data.caches.resident_batches import ResidentBatches, longest_caption

    ds = cached_dataset(prepared, tokenizer, size)
    resident = ResidentBatches(ds, device, batch, 0, tokenizer.pad_token_id)

    def endless():
        for epoch in range(10**9):
            resident.sampler.set_epoch(epoch)
            yield from resident

    return endless(), longest_caption(ds)


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


INPUTS = {"eager": ("synthetic", "uint8 cache loader"), "graph": ("synthetic", "resident cache")}


def one_row(size, device, prepared, tokenizer, batch, bf16, path, source, compile_model) -> dict:
    """Time one (batch, precision, path, input) on a fresh model."""
    model, optimizer = steps.build(size, device)
    if source == "synthetic":
        batches, length = steps.synthetic_batches(size, batch, device), TOKENS
    elif source == "resident cache":
        batches, length = resident_batches(prepared, tokenizer, size, batch, device)
    else:
        batches = loader_batches(prepared, tokenizer, size, batch, device)
    if path == "eager":
        trained = torch.compile(model) if compile_model else model  # compiled in the warm-up
        step = steps.eager_step(trained, optimizer, bf16)
    else:  # warm-up and capture here, before the timed steps
        step = steps.static_step(model, optimizer, bf16, next(batches), length,
                                 tokenizer.pad_token_id if source != "synthetic" else 0)  # fmt: skip
    r = steps.time_steps(step, batches, device, size["warmup"], size["steps"])
    label = "bf16" if bf16 else fp32_label(precision_settings())
    pairs_s = batch / r["s_per_step"]
    return {"batch": batch, "precision": label + (" compiled" if compile_model and
            path == "eager" else ""), "path": steps.path_label(path, device), "input": source,
            **r, "pairs_per_s": pairs_s,
            "hours_300_epochs_10k": 300 * 10_000 / pairs_s / 3600}  # fmt: skip


def training_rows(size: dict, device: torch.device, data_dir: Path, precisions, paths,
                  compile_model: bool = False) -> list[dict]:  # fmt: skip
    """Every (batch, precision, path, input) row; ``vs_eager``: the eager synthetic row's
    ms/step of the same batch and precision over this row's (measured in this run)."""
    prepared, tokenizer = demo_data(data_dir, size["items"])
    rows = []
    for batch in size["batches"]:
        for bf16 in [p == "bf16" for p in precisions]:
            reference = None
            for path in paths:
                for source in INPUTS[path]:
                    row = one_row(size, device, prepared, tokenizer, batch, bf16, path, source,
                                  compile_model)  # fmt: skip
                    if path == "eager" and source == "synthetic":
                        reference = row["s_per_step"]
                    row["vs_eager"] = reference / row["s_per_step"] if reference else None
                    rows.append(row)
                    print(f"  {row}", file=sys.stderr, flush=True)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    return rows


def eval_rows(n_query: int, n_db: int) -> list[dict]:
    """Seconds of metrics.mean_average_precision on random 64-bit codes, both tie policies."""
    from cmh.evaluation.hamming_metrics import mean_average_precision

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
    times = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
    lines = [
        f"machine: {result['machine']}; tiny: {result['tiny']}",
        f"precision ({'--tf32' if result['tf32'] else '--no-tf32'}): fp32 rows "
        + ", ".join(f"{k}={v!r}" for k, v in result["precision"].items())
        + "; bf16 rows: torch.autocast(dtype=torch.bfloat16)",
        "",
        "| batch | precision | step | input | ms/step | vs eager | pairs/s | peak GiB | loss "
        "| 300 ep x 10k pairs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["training"]:
        lines.append(
            f"| {r['batch']} | {r['precision']} | {r['path']} | {r['input']} "
            f"| {r['s_per_step'] * 1e3:.1f} | {times(r['vs_eager'])} | {r['pairs_per_s']:.1f} "
            f"| {gib(r['peak_gib'])} | {r['loss']:.4f} | {r['hours_300_epochs_10k']:.2f} h |"
        )
    if result["concurrency"]:
        lines += ["", "| processes | batch | step | bf16 | ms/step each | pairs/s total "
                  "| overlapped | 9 runs x 300 ep x 10k pairs |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["concurrency"]:
            each = ", ".join(f"{v:.1f}" for v in r["ms_per_step_each"])
            lines.append(
                f"| {r['processes']} | {r['batch']} | {r['path']} | {r['bf16']} | {each} "
                f"| {r['pairs_per_s_total']:.1f} | {r['overlapped']} "
                f"| {r['hours_9_runs_300_epochs_10k']:.2f} h |"
            )
    if result["loop"]:
        lines += ["", "| train.py, 2 epochs | wall s | steps/epoch | train s per epoch "
                  "| epoch s (with validation) | ms/step (epoch 2) |", "|---|---|---|---|---|---|"]  # fmt: skip
        for r in result["loop"]:
            per_step = r["train_s"][-1] / r["steps_per_epoch"] * 1e3
            lines.append(
                f"| {r['path']} | {r['wall_s']:.1f} | {r['steps_per_epoch']} "
                f"| {', '.join(f'{v:.1f}' for v in r['train_s'])} "
                f"| {', '.join(f'{v:.1f}' for v in r['epoch_s'])} | {per_step:.1f} |"
            )
        lines += ["", *(f"{r['path']}: `{r['command']}`" for r in result["loop"])]
    lines += ["", "| queries x database | bits | ties | seconds | mAP |", "|---|---|---|---|---|"]
    for r in result["evaluation"]:
        lines.append(
            f"| {r['queries']} x {r['database']} | {r['bits']} | {r['ties']} "
            f"| {r['seconds']:.2f} | {r['map']:.4f} |"
        )
    return "\n".join(lines)


def parse_args(argv):
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__)
    a = p.add_argument
    a("--out", default="runs/gpu_check.json", help="JSON file of the results")
    a("--tiny", action="store_true", help="small sizes (automatic without CUDA)")
    a("--batches", type=int, nargs="+", help="batch sizes (default 32 128; tiny 4 8)")
    a("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
      help="float32 and/or bf16 autocast rows")  # fmt: skip
    a("--paths", nargs="+", choices=tuple(INPUTS), default=list(INPUTS),
      help="eager steps and/or static steps (CUDA graphs on a GPU; train.py --cuda-graphs)")  # fmt: skip
    a("--parallel", type=int, default=3,
      help="the concurrency rows: 1 and N processes at once (0: none)")  # fmt: skip
    a("--loop", action=argparse.BooleanOptionalAction, default=True,
      help="train.py for 2 epochs at the real scale, eager and --cuda-graphs --resident-data")  # fmt: skip
    a("--data-dir", help="folder for the generated data (default: a temp dir)")
    a("--compile", action="store_true", help="torch.compile the eager rows (train.py --compile)")
    a("--tf32", action=argparse.BooleanOptionalAction, default=False,
      help="TF32 for float32 matmuls and cuDNN convolutions (default --no-tf32: true float32)")  # fmt: skip
    args = p.parse_args(argv)
    if args.parallel < 0:
        p.error(f"--parallel must be 0 (no concurrency rows) or more, got {args.parallel}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type != "cuda"
    size = {**(TINY if tiny else FULL), **({"batches": args.batches} if args.batches else {})}
    t0 = time.perf_counter()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    bf16, batch = args.precisions[0] == "bf16", size["batches"][0]
    try:
        settings = set_tf32(args.tf32)
        print(f"precision: {settings}", file=sys.stderr, flush=True)
        with contextlib.ExitStack() as stack:
            folder = Path(args.data_dir or stack.enter_context(tempfile.TemporaryDirectory()))
            training = training_rows(size, device, folder, args.precisions, args.paths,
                                     args.compile)  # fmt: skip
            concurrency = [gpu_parallel.concurrency_row(size, batch, path, bf16, n, args.tf32)
                           for path in args.paths for n in sorted({1, args.parallel})
                           if args.parallel]  # fmt: skip
            loop = (gpu_loop.loop_rows(size, folder / "loop", batch, bf16, size["workers"])
                    if args.loop else [])  # fmt: skip
    finally:  # leave the process as it was (tests run main() in-process)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    result = {"machine": machine(device), "tiny": tiny, "tf32": args.tf32, "precision": settings,
              "config": {**size, "tokens": TOKENS}, "training": training,
              "concurrency": concurrency, "loop": loop,
              "evaluation": eval_rows(*size["eval"])}  # fmt: skip
    result["seconds"] = time.perf_counter() - t0
    print(markdown(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
