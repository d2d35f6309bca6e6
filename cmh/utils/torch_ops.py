"""Two tensor helpers every part uses the same way: codes as ±1 signs, and autocast switched off.

binarize: the sign with 0 -> +1 (``torch.sign(0)`` is 0, which would make Hamming distances
fractional); autocast_off: a region computed in full precision inside an autocast one (losses).
"""

from __future__ import annotations

import contextlib

import torch


def binarize(h: torch.Tensor) -> torch.Tensor:
    """Map real codes to ±1 (same dtype); 0 maps to +1, never to 0 (unlike torch.sign)."""
    return torch.where(h >= 0, torch.ones_like(h), -torch.ones_like(h))


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that disables autocast on ``device`` (a no-op where autocast does not exist)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
