"""The device a run asks for by name (``--device auto | cpu | cuda``), and the CPU threads it uses."""

from __future__ import annotations

import os

import torch

from cmh.utils.errors import UserError


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when available, else the CPU; cuda without a GPU is refused by name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


def thread_note() -> str:
    """How many CPU threads torch computes with, and why: "2 CPU threads (OMP_NUM_THREADS=2)" or
    "2 CPU threads (one per core; OMP_NUM_THREADS unset)"."""
    n = torch.get_num_threads()
    given = os.environ.get("OMP_NUM_THREADS")
    why = f"OMP_NUM_THREADS={given}" if given else "one per core; OMP_NUM_THREADS unset"
    return f"{n} CPU thread{'s' if n != 1 else ''} ({why})"
