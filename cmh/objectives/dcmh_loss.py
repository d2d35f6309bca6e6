"""The DCMH objective (Jiang & Li, CVPR 2017) as pure functions, and the state it keeps.

DCMH keeps real-valued network outputs F (image) and G (text), [n, bits] buffers over all n
training items, and shared codes B = sign(F + G) in {-1, +1}. One pass of modality "image" on a
batch of rows ``ind`` with outputs f [b, bits] minimises:

    theta   = 0.5 * f @ G.T                                    # [b, n]
    loglik  = sum_ij softplus(theta_ij) - S_ij * theta_ij      # S = similarity rows [b, n]
    quant   = sum (B[ind] - f)^2
    balance = sum_k (f.sum(0) + F[rows not in ind].sum(0))_k^2
    loss    = (loglik + gamma * quant + eta * balance) / (b * n)

and then writes F[ind] = f (detached). The text pass swaps F and G. softplus(x) = log(1 + e^x)
is computed stably (finite for any finite x, also in float32). An epoch is an image pass, a
text pass, then B = sign(F + G); the learning rate falls linearly over the epochs. Pure torch,
device-agnostic; no root module imported.
"""

from __future__ import annotations

import torch

from cmh.utils.torch_ops import autocast_off, binarize

MODALITIES: tuple[str, ...] = ("image", "text")


def _check_loss_args(
    out: torch.Tensor,
    rows: torch.Tensor,
    own: torch.Tensor,
    other: torch.Tensor,
    codes: torch.Tensor,
    similarity: torch.Tensor,
) -> None:
    """Validate the shapes of :func:`dcmh_loss`'s arguments; raise ValueError naming the culprit."""
    if out.dim() != 2 or not out.is_floating_point():
        raise ValueError(f"out: expected a float tensor [b, bits], found {tuple(out.shape)}")
    b, bits = out.shape
    if rows.shape != (b,) or rows.dtype != torch.long:
        raise ValueError(
            f"rows: expected a long tensor [{b}], found {tuple(rows.shape)} {rows.dtype}"
        )
    n = own.shape[0]
    for name, buf in (("own", own), ("other", other), ("codes", codes)):
        if buf.shape != (n, bits):
            raise ValueError(f"{name}: expected shape [{n}, {bits}], found {tuple(buf.shape)}")
    if similarity.shape != (b, n):
        raise ValueError(f"similarity: expected shape [{b}, {n}], found {tuple(similarity.shape)}")
    if b and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"rows: expected indices in [0, {n}), found {rows.min()}..{rows.max()}")
    if rows.unique().numel() != b:
        raise ValueError(
            "rows: a batch must not repeat a row (its balance term would be ambiguous)"
        )


def dcmh_loss(
    out: torch.Tensor,
    rows: torch.Tensor,
    own: torch.Tensor,
    other: torch.Tensor,
    codes: torch.Tensor,
    similarity: torch.Tensor,
    gamma: float = 1.0,
    eta: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The DCMH loss of one batch of one modality; returns its named parts and their sum.

    Args:
        out: [b, bits] float, this batch's real-valued network outputs (carries the gradient).
        rows: [b] long, the batch's distinct row indices among the n training items.
        own: [n, bits] this modality's output buffer (F for images); rows ``rows`` are ignored.
        other: [n, bits] the other modality's output buffer (G for images).
        codes: [n, bits] the shared codes B in {-1, +1}.
        similarity: [b, n] float (or bool) in {0, 1}: 1 where batch item i shares a label
            with training item j (see :func:`similarity_rows`).
        gamma: weight of the quantisation term; eta: weight of the balance term.

    Returns:
        dict of 0-dim tensors "loglik", "quant", "balance" and "loss". Every part is its
        *normalised, weighted* contribution to the loss: loglik / (b n), gamma * quant / (b n),
        eta * balance / (b n), with the raw sums as in the module docstring; so "loss" is the
        sum of the other three, which is (loglik + gamma quant + eta balance) / (b n).

    The buffers, codes and similarity are detached: only ``out`` gets a gradient. Everything is
    computed in float32 (float64 inputs stay float64) with autocast disabled locally, so the
    loss is safe inside an autocast region. Batches must not repeat a row (the public code's
    batches never do): a repeat would make "the rows not in the batch" and the buffer write
    ambiguous, so it raises ValueError, as do misshapen arguments or rows outside [0, n).
    """
    _check_loss_args(out, rows, own, other, codes, similarity)
    dtype = torch.promote_types(out.dtype, torch.float32)
    device = out.device
    b, n = similarity.shape
    with autocast_off(device):
        f = out.to(dtype)
        own, other, codes, s = (
            t.detach().to(device=device, dtype=dtype) for t in (own, other, codes, similarity)
        )
        rows = rows.to(device)
        theta = 0.5 * f @ other.T
        # softplus(theta) = log(1 + exp(theta)) = logaddexp(0, theta), exact and finite
        loglik = (torch.logaddexp(torch.zeros_like(theta), theta) - s * theta).sum()
        quant = ((codes[rows] - f) ** 2).sum()
        outside = torch.ones(n, dtype=torch.bool, device=device)
        outside[rows] = False
        balance = ((f.sum(0) + own[outside].sum(0)) ** 2).sum()
        scale = 1.0 / max(b * n, 1)
        parts = {
            "loglik": loglik * scale,
            "quant": gamma * quant * scale,
            "balance": eta * balance * scale,
        }
    parts["loss"] = parts["loglik"] + parts["quant"] + parts["balance"]
    return parts


def similarity_rows(batch_labels: torch.Tensor, train_labels: torch.Tensor) -> torch.Tensor:
    """[b, C], [n, C] multi-hot (any dtype, nonzero = present) -> [b, n] float32 in {0, 1}.

    Entry (i, j) is 1 when batch item i and training item j share at least one label (an item
    with no label is similar to nobody). Computed in float32 with autocast disabled.
    """
    if batch_labels.dim() != 2 or train_labels.shape[1:] != batch_labels.shape[1:]:
        found = f"{tuple(batch_labels.shape)} and {tuple(train_labels.shape)}"
        raise ValueError(f"labels: expected [b, C] and [n, C] multi-hot, found {found}")
    with autocast_off(batch_labels.device):
        a = (batch_labels != 0).to(torch.float32)
        t = (train_labels != 0).to(device=a.device, dtype=torch.float32)
        return ((a @ t.T) > 0).to(torch.float32)


class DcmhState:
    """The buffers DCMH keeps across batches: F, G [n, bits] float32 and codes B [n, bits] ±1.

    Initialisation (as the public code): F and G standard normal, drawn on the CPU from
    ``generator`` (a torch.Generator, or an int seed) - F first, then G - and moved to
    ``device``; then B = sign(F + G) with 0 -> +1.

    ``single_modality=True`` is for text-only runs (DPSH-style): only G is kept (F is None and
    absent from the state dict), the text pass uses own = other = G, and B = sign(G). Only the
    "text" modality is accepted then.
    """

    def __init__(
        self,
        n: int,
        bits: int,
        generator: torch.Generator | int,
        *,
        single_modality: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if n < 1 or bits < 1:
            raise ValueError(f"DcmhState: expected n >= 1 and bits >= 1, found {n} and {bits}")
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        self.single_modality = single_modality
        self.F: torch.Tensor | None = None
        if not single_modality:
            self.F = torch.randn(n, bits, generator=generator).to(device)
        self.G = torch.randn(n, bits, generator=generator).to(device)
        self.B = torch.empty_like(self.G)
        self.update_codes()

    def _check_modality(self, modality: str) -> None:
        allowed = ("text",) if self.single_modality else MODALITIES
        if modality not in allowed:
            raise ValueError(f"modality: expected one of {allowed}, found {modality!r}")

    def buffers(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(own, other) for :func:`dcmh_loss`: image -> (F, G), text -> (G, F); single: (G, G)."""
        self._check_modality(modality)
        if self.single_modality:
            return self.G, self.G
        assert self.F is not None
        return (self.F, self.G) if modality == "image" else (self.G, self.F)

    def update(self, modality: str, rows: torch.Tensor, out: torch.Tensor) -> None:
        """Write the detached [b, bits] outputs ``out`` into this modality's buffer at ``rows``."""
        own, _ = self.buffers(modality)
        if out.shape != (rows.numel(), own.shape[1]):
            raise ValueError(
                f"out: expected [{rows.numel()}, {own.shape[1]}], found {tuple(out.shape)}"
            )
        own[rows.to(own.device)] = out.detach().to(device=own.device, dtype=own.dtype)

    def update_codes(self) -> None:
        """B = sign(F + G) (single modality: sign(G)), with 0 -> +1."""
        total = self.G if self.F is None else self.F + self.G
        self.B.copy_(binarize(total))

    def state_dict(self) -> dict[str, torch.Tensor | bool]:
        """Plain tensors and a bool (loads with ``torch.load(..., weights_only=True)``)."""
        state: dict[str, torch.Tensor | bool] = {"single_modality": self.single_modality}
        if self.F is not None:
            state["F"] = self.F.clone()
        state.update(G=self.G.clone(), B=self.B.clone())
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | bool]) -> None:
        """Restore exactly what :meth:`state_dict` saved; shapes and mode must match this state."""
        if bool(state.get("single_modality")) != self.single_modality:
            raise ValueError(
                f"state_dict: single_modality={state.get('single_modality')} but this state has "
                f"single_modality={self.single_modality}"
            )
        names = ("G", "B") if self.single_modality else ("F", "G", "B")
        extra = set(state) - {*names, "single_modality"}
        if extra:
            raise ValueError(f"state_dict: unexpected keys {sorted(extra)}")
        for name in names:
            value, current = state.get(name), getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.shape != current.shape:
                found = tuple(value.shape) if isinstance(value, torch.Tensor) else value
                raise ValueError(
                    f"state_dict[{name!r}]: expected {tuple(current.shape)}, found {found}"
                )
        for name in names:  # all checked first, so a refused state leaves this one unchanged
            getattr(self, name).copy_(state[name])


def epoch_batches(n: int, batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One pass: n // batch batches of distinct rows, [batch] long (CPU) each, from a random
    permutation of range(n) drawn from ``generator`` (a CPU torch.Generator); the n % batch
    rows left over are not visited this pass. The result depends on the generator state only.
    Raises ValueError unless 1 <= batch <= n.
    """
    if not 1 <= batch <= n:
        raise ValueError(f"batch: expected 1 <= batch <= n = {n}, found {batch}")
    perm = torch.randperm(n, generator=generator)
    return [perm[i * batch : (i + 1) * batch] for i in range(n // batch)]
