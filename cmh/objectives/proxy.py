"""Hash proxies (``--objective proxy``): DSPH's loss (Huo et al., TCSVT 2023; the HyP loss of
multi-label image hashing), as its public code computes it (shared/BASELINES.md).

One learnable proxy per label, P [labels, bits]. For a modality's batch outputs h [b, bits] (the
hash heads' tanh) and multi-hot labels Y [b, labels], with cos = normalize(h) @ normalize(P).T:

    pos(h) = sum over Y = 1 of (1 - cos)            / (number of ones in Y)
    neg(h) = sum over Y = 0 of relu(cos - tau)      / (number of zeros in Y)

normalised by the batch's counts, not per item. The regulariser, when alpha > 0, looks only at
the batch items with more than one label: over their pairs (i, j) that share no label,
alpha * relu(cos(h_i, h_j) - tau) for image-image, text-text and image-text pairs, each summed
over those pairs and divided by their number (0 when there is none). The loss is the sum of
pos and neg of every modality trained and of the regulariser's terms.

The proxies have their own optimiser, SGD (``--proxy-lr`` 0.02, momentum 0.9, weight decay
5e-4), stepped once per training step: their gradient is complete as soon as backward has
accumulated it, and a hook steps them there (PyTorch's optimizer-in-backward pattern), so the
training loop does not know they exist. They are drawn from their own generator seeded by
``--seed`` (torch.randn, then Kaiming normal with fan_out, as the public code), so adding them
draws nothing from the run's other random streams, and they are saved with their optimiser's
state in every last.pt (``"proxy"``): ``--resume`` continues exactly.

Under torchrun there is one set of proxies, equal on every rank: the ranks start from the same
seeded draw and step on the same gradient. With ``--global-triplets`` every rank computes the
global batch's loss, so every rank holds the same proxy gradient, scaled by the world size like
the towers' (the loop multiplies the loss by it for DDP's average): it is divided back. Without
it each rank's loss is its own slice's and the proxy gradients are averaged over the ranks (as
DDP averages the towers'); the counts that normalise the terms are then each slice's, so only
``--global-triplets`` equals one process with the same batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmh.engine import torchrun
from cmh.objectives.registry import Objective, register_objective
from cmh.utils.errors import UserError

DEFAULT_THRESHOLD = 0.0  # tau: chosen on Twemoji's validation split (docs/objectives.md)
DEFAULT_ALPHA = 0.8
DEFAULT_PROXY_LR = 0.02
PROXY_MOMENTUM = 0.9
PROXY_WEIGHT_DECAY = 5e-4


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n, d], [m, d] -> [n, m] cosine similarities (rows L2-normalised, as F.normalize)."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def proxy_terms(h: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, tau: float):
    """(pos, neg) of one modality's outputs ``h`` [b, bits] against ``proxies`` [labels, bits]."""
    cos = _cosine(h, proxies)
    positive = labels > 0
    n_pos = positive.sum().clamp(min=1)  # a batch without labels has no positive term
    n_neg = (~positive).sum().clamp(min=1)
    pos = torch.where(positive, 1 - cos, torch.zeros_like(cos)).sum() / n_pos
    neg = torch.where(positive, torch.zeros_like(cos), F.relu(cos - tau)).sum() / n_neg
    return pos, neg


def _pair_term(a: torch.Tensor, b: torch.Tensor, apart: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean of relu(cos(a_i, b_j) - tau) over the pairs (i, j) marked in ``apart``."""
    cos = _cosine(a, b)
    return torch.where(apart, F.relu(cos - tau), torch.zeros_like(cos)).sum() / apart.sum()


def regulariser_terms(codes: dict, labels: torch.Tensor, tau: float, alpha: float) -> dict:
    """alpha * the mean of relu(cos - tau) over the pairs sharing no label among the items with
    more than one label, per pair of modalities ("reg_ii", "reg_tt", "reg_it"); an empty dict
    when alpha is 0 or no such pair exists."""
    many = labels.sum(1) > 1
    y = labels[many].float()
    apart = (y @ y.T) == 0
    if alpha == 0 or not apart.any():
        return {}
    h = {m: c[many] for m, c in codes.items()}
    pairs = {"reg_ii": ("image", "image"), "reg_tt": ("text", "text"), "reg_it": ("image", "text")}
    return {
        name: alpha * _pair_term(h[a], h[b], apart, tau)
        for name, (a, b) in pairs.items()
        if a in h and b in h
    }


def proxy_loss(image_codes, text_codes, labels, proxies, tau: float, alpha: float) -> dict:
    """DSPH's loss of one batch: named 0-dim terms and their sum ``loss``. ``image_codes`` or
    ``text_codes`` may be None (a single-modality run). Computed in float32."""
    codes = {m: c.float() for m, c in (("image", image_codes), ("text", text_codes)) if c is not None}
    if not codes:
        raise ValueError("proxy_loss: give image_codes, text_codes or both")
    labels = labels.to(proxies.device)
    terms = {}
    for modality, h in codes.items():
        short = modality[0]
        terms[f"pos_{short}"], terms[f"neg_{short}"] = proxy_terms(h, proxies.float(), labels, tau)
    terms.update(regulariser_terms(codes, labels, tau, alpha))
    terms["loss"] = torch.stack(list(terms.values())).sum()
    return terms


class Proxies(nn.Module):
    """P [labels, bits]: torch.randn, then Kaiming normal with fan_out, from ``generator``."""

    def __init__(self, n_labels: int, bits: int, generator: torch.Generator):
        super().__init__()
        weight = torch.randn(n_labels, bits, generator=generator)
        nn.init.kaiming_normal_(weight, mode="fan_out", generator=generator)
        self.weight = nn.Parameter(weight)


class ProxyState:
    """The run's proxies and their SGD, stepped by a hook as soon as backward has accumulated
    their gradient. ``scale`` divides that gradient first (the world size under
    --global-triplets); under torchrun without it the gradient is averaged over the ranks."""

    def __init__(self, n_labels, bits, seed, lr, device, dist=torchrun.Dist(), scale=1.0):
        generator = torch.Generator().manual_seed(seed)
        self.proxies = Proxies(n_labels, bits, generator).to(device)
        self.weight = self.proxies.weight
        self.optimizer = torch.optim.SGD(
            [self.weight], lr=lr, momentum=PROXY_MOMENTUM, weight_decay=PROXY_WEIGHT_DECAY
        )
        self.dist, self.scale = dist, scale
        self.weight.register_post_accumulate_grad_hook(self._step)

    def _step(self, weight: torch.Tensor) -> None:
        if self.scale != 1.0:
            weight.grad /= self.scale  # every rank computed the global batch's loss
        else:
            torchrun.average_gradients(self.dist, self.proxies)  # nothing on one process
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"proxies": self.weight.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.weight.copy_(state["proxies"])
        self.optimizer.load_state_dict(state["optimizer"])


class ProxyLoss:
    """The standard step's loss: DSPH's, against the proxies of the run's state (bound by
    :func:`new_state`, which knows the number of labels)."""

    def __init__(self, args, terms: tuple[str, ...]):
        self.tau, self.alpha = args.proxy_threshold, args.proxy_alpha
        self.state: ProxyState | None = None

    def __call__(self, image_codes, text_codes, labels) -> dict:
        if self.state is None:
            raise RuntimeError("the proxy loss was called before its proxies were made (new_state)")
        return proxy_loss(image_codes, text_codes, labels, self.state.weight, self.tau, self.alpha)


def new_state(run, model) -> ProxyState:
    """The run's proxies, one per label column of its data, bound to its loss."""
    args, dist = run.args, run.dist
    scale = float(dist.world) if args.global_triplets and dist.enabled else 1.0
    n_labels = len(run.data.label_names)
    state = ProxyState(n_labels, run.cfg.bits, args.seed, args.proxy_lr, run.device, dist, scale)
    run.loss_fn.state = state
    return state


def add_flags(add) -> None:
    add("--proxy-threshold", type=float, default=DEFAULT_THRESHOLD,
        help="proxy: tau, the cosine below which codes are pushed from the proxies of labels "
        "they lack (and from items they share no label with)")  # fmt: skip
    add("--proxy-alpha", type=float, default=DEFAULT_ALPHA,
        help="proxy: weight of the regulariser over pairs sharing no label (0: off)")  # fmt: skip
    add("--proxy-lr", type=float, default=DEFAULT_PROXY_LR,
        help=f"proxy: learning rate of the proxies' own SGD (momentum {PROXY_MOMENTUM}, "
        f"weight decay {PROXY_WEIGHT_DECAY:g})")  # fmt: skip


def check(args) -> None:
    if not -1 <= args.proxy_threshold < 1:
        raise UserError(f"--proxy-threshold must be a cosine in [-1, 1), got {args.proxy_threshold}")
    if not args.proxy_alpha >= 0:
        raise UserError(f"--proxy-alpha must be >= 0, got {args.proxy_alpha}")
    if not args.proxy_lr > 0:
        raise UserError(f"--proxy-lr must be > 0, got {args.proxy_lr}")


PROXY = register_objective(
    Objective(
        name="proxy",
        summary="hash proxies (DSPH, TCSVT 2023): codes pulled towards learnable proxies of "
        "their labels, pushed below a cosine threshold from the others",
        head_activation="tanh",
        add_flags=add_flags,
        check=check,
        refuses={"cuda_graphs": "its proxies step inside backward, outside the captured step"},
        loss=ProxyLoss,
        new_state=new_state,
    )
)
