"""bench/gpu_check.py on the CPU (--tiny): the table, the JSON and the projection arithmetic."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_table_and_json(tmp_path, capsys):
    import torch

    gpu_check = load_gpu_check()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    out = tmp_path / "g.json"
    argv = ["--tiny", "--out", str(out), "--batches", "4", "--precisions", "fp32",
            "--parallel", "0", "--no-loop"]  # fmt: skip
    assert gpu_check.main([*argv, "--data-dir", str(tmp_path / "demo")]) == 0
    result = json.loads(out.read_text())
    assert result["tiny"] is True and result["config"]["image"] == 32
    assert result["tf32"] is False  # the default: true float32 in matmuls and convolutions
    assert result["precision"] == {
        "torch.backends.cuda.matmul.allow_tf32": False,
        "torch.backends.cudnn.allow_tf32": False,
        "float32_matmul_precision": "highest",
    }
    rows = result["training"]
    fp32 = "fp32 (matmul fp32, conv fp32)"
    static = "static, not captured"  # no CUDA here: cmh.engine.graph_step runs without capture
    assert [(r["batch"], r["precision"], r["path"], r["input"]) for r in rows] == [
        (4, fp32, "eager", "synthetic"),
        (4, fp32, "eager", "uint8 cache loader"),
        (4, fp32, static, "synthetic"),
        (4, fp32, static, "resident cache"),
    ]
    for r in rows:
        assert r["s_per_step"] > 0 and math.isfinite(r["loss"]) and r["loss"] >= 0
        assert math.isclose(r["pairs_per_s"], 4 / r["s_per_step"])
        assert math.isclose(r["hours_300_epochs_10k"], 3e6 / r["pairs_per_s"] / 3600)
        assert math.isclose(r["vs_eager"], rows[0]["s_per_step"] / r["s_per_step"])
    assert rows[0]["loss"] > 0  # the synthetic labels give valid triplets
    # the same model, batch and steps: the static step (warm-up undone) ends on the same loss
    assert math.isclose(rows[2]["loss"], rows[0]["loss"], rel_tol=1e-5)
    assert result["concurrency"] == [] and result["loop"] == []
    ties = {r["ties"]: r for r in result["evaluation"]}
    assert set(ties) == {"index", "average"}
    for r in ties.values():
        assert (r["queries"], r["database"], r["bits"]) == (50, 300, 64)
        assert 0.0 < r["map"] <= 1.0 and r["seconds"] >= 0
    printed = capsys.readouterr().out
    assert (
        "precision (--no-tf32): fp32 rows torch.backends.cuda.matmul.allow_tf32=False, "
        "torch.backends.cudnn.allow_tf32=False, float32_matmul_precision='highest'; "
        "bf16 rows: torch.autocast(dtype=torch.bfloat16)\n"
    ) in printed
    assert f"| 4 | {fp32} | eager | uint8 cache loader |" in printed
    assert f"| 4 | {fp32} | {static} | resident cache |" in printed
    assert "| 50 x 300 | 64 | average |" in printed
    # the process is left as it was
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_tf32_flag_sets_matmul_and_convolutions():
    import torch

    gpu_check = load_gpu_check()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        on = gpu_check.set_tf32(True)
        assert on == {
            "torch.backends.cuda.matmul.allow_tf32": True,
            "torch.backends.cudnn.allow_tf32": True,
            "float32_matmul_precision": "high",
        }
        assert gpu_check.fp32_label(on) == "fp32 (matmul TF32, conv TF32)"
        off = gpu_check.set_tf32(False)
        assert off["float32_matmul_precision"] == "highest"
        assert gpu_check.fp32_label(off) == "fp32 (matmul fp32, conv fp32)"
        mixed = {**off, "torch.backends.cudnn.allow_tf32": True}  # torch's own defaults
        assert gpu_check.fp32_label(mixed) == "fp32 (matmul fp32, conv TF32)"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_full_size_config_is_the_brief():
    gpu_check = load_gpu_check()
    full = gpu_check.FULL
    assert full["image"] == 224 and full["bert"] == {}  # BertConfig defaults: BERT-base size
    assert full["batches"] == (32, 128) and full["eval"] == (2000, 18000)
    assert gpu_check.TOKENS == 40 and gpu_check.EVAL_BITS == 64
    from transformers import BertConfig

    base = BertConfig(**full["bert"])
    assert (base.hidden_size, base.num_hidden_layers, base.vocab_size) == (768, 12, 30522)


def test_concurrency_row_runs_processes_at_once():
    gpu_check = load_gpu_check()
    row = gpu_check.gpu_parallel.concurrency_row(gpu_check.TINY, 4, "graph", False, 2)
    assert row["processes"] == 2 and len(row["ms_per_step_each"]) == 2
    assert row["overlapped"]  # the barrier lines the timed windows up
    total = sum(4 / (ms / 1e3) for ms in row["ms_per_step_each"])
    assert math.isclose(row["pairs_per_s_total"], total)
    assert math.isclose(row["hours_9_runs_300_epochs_10k"], 9 * 3e6 / total / 3600)


def test_a_failing_worker_is_reported():
    gpu_check = load_gpu_check()
    broken = {**gpu_check.TINY, "name": "tiny", "parallel_steps": 1}
    with pytest.raises(RuntimeError, match="concurrency worker 0 of 1 failed"):
        gpu_check.gpu_parallel.concurrency_row(broken, 0, "eager", False, 1)  # batch 0


@pytest.mark.slow
def test_loop_rows_run_train_py_both_ways(tmp_path):
    gpu_check = load_gpu_check()
    rows = gpu_check.gpu_loop.loop_rows(gpu_check.TINY, tmp_path, 4, False, 0)
    assert [r["path"] for r in rows] == ["eager", "cuda graphs + resident data"]
    for r in rows:
        assert len(r["train_s"]) == len(r["epoch_s"]) == 2 and r["wall_s"] > sum(r["epoch_s"])
        assert all(0 < t <= e for t, e in zip(r["train_s"], r["epoch_s"], strict=True))
        assert r["steps_per_epoch"] == 50 // 4  # 100 items: 50 train
        assert 0 < r["val_map_i2t"] <= 1 and "--batch-size 4 --bits 32 --margin 12" in r["command"]
    graph = json.loads((tmp_path / "run-cuda" / "args.json").read_text())
    assert graph["cuda_graphs"] and graph["resident_data"]
    assert not json.loads((tmp_path / "run-eager" / "args.json").read_text())["cuda_graphs"]
    bert = json.loads((tmp_path / "bert" / "config.json").read_text())
    assert bert["num_hidden_layers"] == gpu_check.TINY["bert"]["num_hidden_layers"]
