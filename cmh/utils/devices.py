"""The device a run asks for by name (``--device auto | cpu | cuda``)."""

from __future__ import annotations

import torch

from cmh.utils.errors import UserError


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when available, else the CPU; cuda without a GPU is refused by name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)
