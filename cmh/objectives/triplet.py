"""The triplet objective (``--objective triplet``, the reference's): inter- and intra-modal
triplet ranking losses on tanh codes (:func:`cmh.objectives.triplet_loss.hashing_loss`)."""

from __future__ import annotations

from cmh.objectives.registry import Objective, register_objective
from cmh.objectives.triplet_loss import TRIPLET_MODES, hashing_loss


def add_flags(add) -> None:
    add(
        "--triplets",
        choices=TRIPLET_MODES,
        help="all valid triplets, batch-hard, or the reference implementation's triplet set",
    )
    add("--quant-weight", type=float, default=0.0, help="weight of mean((|h|-1)^2)")


def loss(args, terms: tuple[str, ...]):
    """(image codes | None, text codes | None, labels) -> hashing_loss's dict, with the run's
    margin, triplet set and quantization weight."""

    def loss_fn(image_codes, text_codes, labels):
        return hashing_loss(
            image_codes,
            text_codes,
            labels,
            args.margin,
            triplets=args.triplets,
            quant_weight=args.quant_weight,
            terms=terms,
        )

    return loss_fn


TRIPLET = register_objective(
    Objective(
        name="triplet",
        summary="inter- and intra-modal triplet ranking losses on tanh codes (the reference's)",
        head_activation="tanh",
        add_flags=add_flags,
        loss=loss,
    )
)
