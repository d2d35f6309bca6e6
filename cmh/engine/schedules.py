"""Learning-rate schedules (``--lr-schedule``): one function per schedule, pure."""

from __future__ import annotations


def lr_schedule(epoch: int, epochs: int, start: float = 10**-1.5, end: float = 1e-6) -> float:
    """The learning rate of ``epoch`` (0-based): linear from ``start`` to ``end``.

    Epoch 0 gets exactly ``start`` and the last epoch (epochs - 1) exactly ``end``; in between
    start + (end - start) * epoch / (epochs - 1), i.e. ``numpy.linspace(start, end, epochs)``.
    With epochs == 1 the only epoch gets ``start``. Raises ValueError for epoch outside
    [0, epochs).
    """
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch: expected 0 <= epoch < epochs = {epochs}, found {epoch}")
    if epoch == epochs - 1 and epochs > 1:
        return float(end)
    return float(start + (end - start) * epoch / max(epochs - 1, 1))
