"""Data-parallel training through `torchrun`: process group set-up and the few collectives we use.

    torchrun --nproc_per_node 4 train.py --data DIR ...                      # one node, 4 GPUs
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 train.py ...

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op for a
single process. NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group if torchrun started us; return (Dist, this rank's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device
    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist, device


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


def all_mean(dist: Dist, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean of each 0-dim tensor over the ranks (one collective for the whole dict)."""
    if not dist.enabled:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in keys])
    tdist.all_reduce(stacked)
    return dict(zip(keys, stacked / dist.world, strict=True))


def any_rank(dist: Dist, flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is True on at least one (so all ranks stop together)."""
    if not dist.enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item())


def gather(dist: Dist, x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` [b, ...] from every rank in rank order -> [world * b, ...].

    The local slice keeps its autograd graph (gradients flow to this rank's part only); the other
    ranks' slices are constants here and receive their gradients on their own ranks.
    """
    if not dist.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.world)]
    tdist.all_gather(parts, x.detach().contiguous())
    parts[dist.rank] = x
    return torch.cat(parts)


def average_gradients(dist: Dist, module: torch.nn.Module) -> None:
    """Replace every gradient of `module` by its mean over the ranks (one collective). Every rank
    must hold gradients for the same parameters (the same tower stepped on every rank)."""
    if not dist.enabled:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    flat /= dist.world
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view_as(g))


def broadcast_module(dist: Dist, module: torch.nn.Module, parameters: bool = False) -> None:
    """Rank 0's buffers (BatchNorm running statistics), and its parameters too with
    ``parameters``, on every rank."""
    if not dist.enabled:
        return
    tensors = [*module.parameters(), *module.buffers()] if parameters else module.buffers()
    with torch.no_grad():
        for tensor in tensors:
            tdist.broadcast(tensor, 0)


def same_on_all_ranks(dist: Dist, tensors: list[torch.Tensor]) -> bool:
    """Whether every rank holds the same ``tensors``, by two float64 checksums of each (the plain
    sum and a position-weighted one), compared as their minimum and maximum over the ranks."""
    if not dist.enabled:
        return True
    sums = []
    for t in tensors:
        flat = t.detach().reshape(-1).double()
        weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64)
        sums += [flat.sum(), (flat * weights.remainder(9973)).sum()]
    low, high = torch.stack(sums), torch.stack(sums).clone()
    tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
    tdist.all_reduce(high, op=tdist.ReduceOp.MAX)
    return bool(torch.equal(low, high))
