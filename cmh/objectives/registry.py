"""Objectives by name: a module of this package (or a user's) registers one :class:`Objective`.

An objective owns everything about itself: its flags and their defaults, the head activation its
codes need, the default ``--head-norm``, its refusals, the loss of the standard training step,
and, when it keeps per-run state (DCMH's buffers) or runs its own epoch, those too. train.py, the
training loop and the argument checks only ever ask the registered objective:

    from cmh.objectives import Objective, register_objective
    register_objective(Objective(name="mine", summary="...", loss=my_loss_factory))

then ``python train.py --objective mine``. ``--help`` lists every registered name; an unknown
name is refused with the closest ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cmh.utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Objective:
    """One training objective.

    name: what ``--objective`` takes. summary: one line for ``--help``.
    head_activation: "tanh" (codes in (-1, 1)) or "none" (linear heads).
    head_norm: the default ``--head-norm`` ("none" or "batchnorm").
    add_flags(add): adds its own flags with ``add`` (argparse's add_argument of its group).
    check(args): raises UserError for values of its own flags it cannot use.
    refuses: {flag attribute: why} for run flags that do not go with it (set means refused).
    loss(args, terms): the loss function of the standard step, (image codes | None, text codes
        | None, labels) -> dict of named 0-dim tensors with "loss"; ``terms`` are the
        directions the run trains ("t2t" alone for a text-only run).
    new_state(run, model): per-run state with state_dict() / load_state_dict(), saved in every
        last.pt under ``name`` so --resume continues exactly; None: no state.
    train_epoch(run, model, optimizer, state, epoch): its own epoch instead of the standard
        step (it averages gradients itself under torchrun); returns the epoch's mean terms.
    """

    name: str
    summary: str
    head_activation: str = "tanh"
    head_norm: str = "none"
    add_flags: Callable[[Callable], None] | None = None
    check: Callable[[Any], None] | None = None
    refuses: Mapping[str, str] = field(default_factory=dict)
    loss: Callable[[Any, tuple[str, ...]], Callable[..., dict]] | None = None
    new_state: Callable[[Any, Any], Any] | None = None
    train_epoch: Callable[..., dict] | None = None

    def __post_init__(self):
        if self.head_activation not in ("tanh", "none"):
            raise ValueError(f"objective {self.name!r}: head_activation must be tanh or none")
        if self.loss is None and self.train_epoch is None:
            raise ValueError(f"objective {self.name!r}: give loss, train_epoch or both")


_OBJECTIVES: dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    """Add ``objective`` under its name (a second registration of a name is refused)."""
    if objective.name in _OBJECTIVES:
        raise ValueError(f"an objective named {objective.name!r} is registered already")
    _OBJECTIVES[objective.name] = objective
    return objective


def unregister_objective(name: str) -> None:
    """Remove a registered objective (tests that register their own)."""
    _OBJECTIVES.pop(name, None)


def objective_names() -> list[str]:
    return sorted(_OBJECTIVES)


def registered_objectives() -> list[Objective]:
    return [_OBJECTIVES[n] for n in objective_names()]


def get_objective(name: str) -> Objective:
    """The objective registered as ``name``; UserError naming the closest names otherwise."""
    if name not in _OBJECTIVES:
        raise UserError(unknown_name("--objective", name, objective_names()))
    return _OBJECTIVES[name]


def unknown_name(flag: str, name: str, known: list[str]) -> str:
    """The one message for a name no registry holds: the closest names, then all of them."""
    return f"{flag} {name!r} is not registered{did_you_mean(name, known)}; registered: {', '.join(known)}"
