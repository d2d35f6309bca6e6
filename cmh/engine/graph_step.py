"""--cuda-graphs: the whole training step captured once as a CUDA graph, then replayed.

At batch 32 an eager step launches hundreds of small kernels from Python; the GPU waits on the
launches, not on the arithmetic. :class:`StaticStep` records the step once — forward, loss,
backward and the optimizer's update — and each later step copies the batch into fixed input
buffers and replays the recording: one launch from Python per step.

What stays the same as the eager loop (cmh.engine.loop.train_one_epoch):

- the arithmetic: the same modules, loss and optimizer run the same kernels on the same batches;
  only Adam's step counter lives on the device (``capturable=True``). tests/engine/test_graph_step.py
  checks losses and weights against the eager loop (on the CPU the step runs uncaptured on the
  static buffers, see below; on a GPU the captured graph, when one is present);
- the start: capture needs a few warm-up steps (cuBLAS / cuDNN workspaces, the optimizer's
  state); they run on the first batch and are then undone — weights, buffers (BatchNorm
  statistics), the optimizer's state and the RNG states are put back in place, so the run starts
  from exactly where the eager loop would;
- the batches: every step has exactly ``batch_size`` items, so the last partial batch of an epoch
  is dropped (not padded: a padded item would enter the triplets as a real one); each epoch
  reshuffles, so no item is left out for good. Token ids are padded to the split's longest caption
  (the padding is masked out of attention, so only float rounding differs from padding to the
  batch's longest).

Dropout masks come from the device's generator in both paths but are drawn in a different order
inside a graph, so with dropout on the two paths agree in distribution, not bit for bit.

On a machine without CUDA (tests, CI) the same class runs the step eagerly on its static buffers:
the buffer copies, padding, warm-up and restore are all exercised, the capture is not. Refused
(cmh.config.argument_checks): torchrun (DDP's gradient hooks), --objective dcmh (its own schedule),
--solver sgd (its first step is not the step of zeroed state, so warm-up cannot be undone),
--compile, --lr-schedule linear (the captured step holds the rate as a constant), --triplets hard
(a number of anchors that depends on the batch: a shape, and a device sync, inside the graph).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

# Keys of a batch that are inputs of the step; "index" (item ids) never enters the model.
PADDED = {"input_ids", "attention_mask"}
WARMUP_STEPS = 3


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Copies of every weight and buffer, of the optimizer's state and of the RNG states."""
    return {
        "model": [t.detach().clone() for t in model.state_dict(keep_vars=True).values()],
        "optimizer": {
            p: {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
            for p, state in optimizer.state.items()
        },
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Put the snapshot back *in place* (a captured graph holds these tensors' addresses).
    Optimizer state created by the warm-up is zeroed: Adam's fresh state is zeros (moments, step)."""
    with torch.no_grad():
        for t, old in zip(model.state_dict(keep_vars=True).values(), saved["model"], strict=True):
            t.copy_(old)
        for p, state in optimizer.state.items():
            old = saved["optimizer"].get(p)
            for k, v in state.items():
                if torch.is_tensor(v):
                    v.copy_(old[k]) if old is not None else v.zero_()
    torch.set_rng_state(saved["cpu_rng"])
    if saved["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam / AdamW with the step counter on the device (``capturable``), state moved there."""
    for group in optimizer.param_groups:
        group["capturable"] = True
    for state in optimizer.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].to(device=device, dtype=torch.float32)


class StaticStep:
    """One training step on fixed buffers: ``step(batch)`` copies ``batch`` into them and runs
    forward, loss, backward and ``optimizer.step()`` — replaying a CUDA graph when ``capture``.

    ``forward_loss(batch) -> dict`` is the model and loss of one batch (its "loss" is back-
    propagated); ``example`` fixes the buffers' shapes: every later batch must have the same
    shapes, except ``input_ids`` / ``attention_mask``, padded up to ``text_length`` with
    ``pad_id`` / 0. The dict returned by ``step`` is the same tensors each time (read them
    before the next step)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        forward_loss: Callable[[dict], dict],
        example: dict,
        text_length: int | None = None,
        pad_id: int = 0,
        capture: bool | None = None,
        warmup: int = WARMUP_STEPS,
    ) -> None:
        self.model, self.optimizer, self.forward_loss = model, optimizer, forward_loss
        self.pad = {"input_ids": pad_id, "attention_mask": 0}
        self.buffers = {}
        for k, v in example.items():
            if not torch.is_tensor(v) or k == "index":
                continue
            shape = list(v.shape)
            if k in PADDED and text_length is not None:
                shape[1] = text_length
            self.buffers[k] = torch.empty(shape, dtype=v.dtype, device=v.device)
        device = next(iter(self.buffers.values())).device
        self.capture = device.type == "cuda" if capture is None else capture
        self.graph, self.outputs = None, None
        self._fill(example)
        if self.capture:
            make_capturable(optimizer, device)
        self._warm_up(warmup)

    def _fill(self, batch: dict) -> None:
        for k, buf in self.buffers.items():
            src = batch[k]
            if k in PADDED:
                length = src.shape[1]
                if src.shape[0] != buf.shape[0] or length > buf.shape[1]:
                    raise ValueError(
                        f"batch {k} has shape {list(src.shape)}; the static step takes "
                        f"{buf.shape[0]} rows of at most {buf.shape[1]} tokens"
                    )
                buf[:, :length].copy_(src, non_blocking=True)
                buf[:, length:].fill_(self.pad[k])
            elif src.shape != buf.shape:
                raise ValueError(
                    f"batch {k} has shape {list(src.shape)}, the static step's is "
                    f"{list(buf.shape)} (every batch must have the same size)"
                )
            else:
                buf.copy_(src, non_blocking=True)

    def _eager(self) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.forward_loss(self.buffers)
        out["loss"].backward()
        self.optimizer.step()
        return out

    def _warm_up(self, steps: int) -> None:
        """``steps`` eager steps on the first batch (on a side stream when capturing), everything
        they changed put back (:func:`_restore`), then the capture (which records, runs nothing)."""
        saved = _snapshot(self.model, self.optimizer)
        side = torch.cuda.Stream() if self.capture else None
        if side is not None:
            side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            for _ in range(steps):
                self._eager()
        if side is not None:
            torch.cuda.current_stream().wait_stream(side)
        _restore(self.model, self.optimizer, saved)
        if not self.capture:
            return
        self.optimizer.zero_grad(set_to_none=True)  # the gradients: allocated inside the graph
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            out = self.forward_loss(self.buffers)
            out["loss"].backward()
            self.optimizer.step()
        self.outputs = {k: v.detach() for k, v in out.items()}

    def __call__(self, batch: dict) -> dict:
        self._fill(batch)
        if self.graph is None:
            return {k: v.detach() for k, v in self._eager().items()}
        self.graph.replay()
        return self.outputs


def static_epoch(batches, step_for: Callable[[dict], StaticStep], epoch: int) -> dict:
    """One epoch of static steps: ``step_for(first batch)`` gives the run's StaticStep (built
    and captured once). The loss terms stay on the device, checked once at the end of the epoch
    (a per-step check would wait on the GPU every step): a non-finite loss raises
    FloatingPointError naming the first such step and its item ids. Returns each term's mean."""
    terms, ids, names = [], [], None
    for batch in batches:
        out = step_for(batch)(batch)
        names = names or list(out)
        terms.append(torch.stack([out[k].float() for k in names]))  # a copy: read before replay
        ids.append(batch["index"])
    if not terms:
        raise ValueError(f"epoch {epoch} had no full batch")
    table = torch.stack(terms).cpu()  # [steps, terms]: the epoch's one wait on the device
    bad = (~torch.isfinite(table[:, names.index("loss")])).nonzero().flatten().tolist()
    if bad:
        raise FloatingPointError(
            f"non-finite loss ({table[bad[0], names.index('loss')].item()}) at epoch {epoch}, "
            f"step {bad[0]}, batch item ids {ids[bad[0]].tolist()} (--cuda-graphs: found at the "
            "end of the epoch; the last checkpoint is the previous epoch's)"
        )
    return {k: float(table[:, j].mean()) for j, k in enumerate(names)}
