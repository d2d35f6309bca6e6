"""The losses hashing is trained with, by name: ``--objective triplet`` (the reference's) or any
other registered objective (``python train.py --help`` lists them).

    from loss import hashing_loss              # the triplet ranking loss, pure torch
    from loss import get_objective             # an objective by name: its loss, flags, state

The triplet loss, term by term (cmh/objectives/triplet_loss.py):

    F = F(I->T) + F(T->I) + F(I->I) + F(T->T) [+ quant]
    F(A->B) = mean over valid (a, p, n) of max(0, margin + ||a_A - p_B||^2 - ||a_A - n_B||^2)

on tanh codes, items similar when they share a label. DCMH's objective is in
cmh/objectives/dcmh_loss.py; what an objective owns, and how to add one, in docs/objectives.md.
"""

from cmh.objectives import Objective, get_objective, objective_names, register_objective  # noqa: F401
from cmh.objectives.triplet_loss import (  # noqa: F401
    TERMS,
    TRIPLET_MODES,
    hashing_loss,
    label_similarity,
    reference_triplet_weights,
)
