"""Replace one tower's output by a constant: every item gets the same code in that modality,
and the tower gets zero gradients. A test that compares two code paths must fail with it (the
tests marked ``compares``; ``python tests/check_constant_towers.py`` runs them so)."""

from __future__ import annotations

TOWERS = ("image", "text")


def make_constant(tower: str) -> None:
    """Patch CrossModalHasher.encode_image or encode_text (every path to a tower's codes:
    training, evaluation, frozen features, DCMH) to return 0.5 in every place."""
    if tower not in TOWERS:
        raise ValueError(f"CMH_CONSTANT_TOWER={tower!r}: expected one of {TOWERS}")
    from cmh.models.hashers import CrossModalHasher

    name = f"encode_{tower}"
    real = getattr(CrossModalHasher, name)
    if getattr(real, "constant", False):
        return

    def constant(self, batch):
        out = real(self, batch)
        return out * 0 + 0.5  # same shape, dtype, device and graph; one code for every item

    constant.constant = True
    setattr(CrossModalHasher, name, constant)
