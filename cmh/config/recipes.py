"""Recipes: named sets of training settings, each setting an ordinary flag of its own.

``--recipe default`` is this project's; ``--recipe seed`` is what the reference implementation
behind the published IAPR TC-12 numbers does (``shared/SEED-RECIPE.md``). A recipe only fills
the flags the user did not give (explicit flags win; ``--demo``'s CPU sizes win over the
recipe's sizes). Every difference between the two is one of :data:`RECIPE_SETTINGS`, listed in
``--help`` and the README, and recorded in ``args.json`` like any flag:

- ``image_framing``: ``squash-crop`` (default) trains on a random S x S crop (flipped with p 1/2)
  of the image resized, aspect ratio not kept, to int(1.143 S) square, and evaluates on the
  image resized to S x S: training and evaluation see the same aspect distortion, the crop is
  the usual 87.5 % of the side, and the GPU image cache (``--image-cache``) does exactly the
  same on tensors. ``squash`` (the reference) resizes to exactly S x S for both, no crop, and
  flips in training.
- ``image_norm``: ``imagenet`` mean/std (what the pretrained ResNet-18 saw) or ``cifar10``
  (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010), which the reference uses.
- ``max_length``: 128 tokens (the real IAPR captions: at most 99 BERT tokens with [CLS] and
  [SEP], so none is cut); 0 means the text model's own limit (512 for BERT), i.e. never cut,
  as the reference. Both wrap the caption as ``[CLS] caption [SEP]``: the tokenizer adds the
  two special tokens, the same ids as tokenizing that literal string (tested).
- ``triplets``: ``all`` valid triplets, or the reference's set (``loss.py``).
- ``query_every``: off, or 10 (the reference's query evaluation every 10 epochs; reported
  only, never used for selection: ``--query-every``).
- the optimiser (one Adam, lr 1e-5, weight decay 5e-4, batch 32, 300 epochs) is the same in
  both; the reference runs 301 passes (epochs 0..300) and evaluates the last at epoch 300.
  No dropout before the hash layers in either (the encoders keep their own).
"""

from __future__ import annotations

from cmh.utils.errors import UserError

RECIPES: dict[str, dict] = {
    "default": {
        "image_framing": "squash-crop",
        "image_norm": "imagenet",
        "max_length": 128,
        "triplets": "all",
        "epochs": 300,
        "batch_size": 32,
        "lr": 1e-5,
        "weight_decay": 5e-4,
        "image_size": 224,
        "query_every": None,
        "objective": "triplet",
        "solver": "adam",
        "lr_schedule": "constant",
    },
    "seed": {
        "image_framing": "squash",
        "image_norm": "cifar10",
        "max_length": 0,
        "triplets": "reference",
        "epochs": 300,
        "batch_size": 32,
        "lr": 1e-5,
        "weight_decay": 5e-4,
        "image_size": 224,
        "query_every": 10,
        "objective": "triplet",
        "solver": "adam",
        "lr_schedule": "constant",
    },
    # DCMH (Jiang & Li, CVPR 2017) as its public code trains it (shared/BASELINES.md): the
    # objective with gamma = eta = 1 (--gamma, --eta), batch 128, plain SGD whose learning rate
    # falls linearly from 10^-1.5 to 1e-6 (--lr-end) over 500 epochs, weight decay 5e-4; the data,
    # backbones, framing, selection and metric stay ours. --solver adam --lr-schedule constant
    # --lr 1e-5 gives it our optimiser instead.
    "dcmh": {
        "image_framing": "squash-crop",
        "image_norm": "imagenet",
        "max_length": 128,
        "triplets": "all",
        "epochs": 500,
        "batch_size": 128,
        "lr": 10**-1.5,
        "weight_decay": 5e-4,
        "image_size": 224,
        "query_every": None,
        "objective": "dcmh",
        "solver": "sgd",
        "lr_schedule": "linear",
    },
}
RECIPE_SETTINGS = tuple(RECIPES["default"])
FRAMINGS = ("squash-crop", "squash")
NORMS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def norm_stats(norm: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of an ``--image-norm``: a name of NORMS, or "r,g,b/r,g,b" (a model's own
    statistics, as timm's pretrained configs give them); UserError naming the value otherwise."""
    if norm in NORMS:
        return NORMS[norm]
    try:
        mean, std = (tuple(float(v) for v in part.split(",")) for part in norm.split("/"))
    except ValueError:
        mean = std = ()
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise UserError(
            f"--image-norm {norm!r}: expected one of {', '.join(NORMS)} or MEAN/STD as "
            "'r,g,b/r,g,b' with positive std"
        )
    return mean, std


def norm_name(mean, std) -> str:
    """The ``--image-norm`` value of (mean, std): a NORMS name when it is one, else "r,g,b/r,g,b"."""
    for name, stats in NORMS.items():
        if tuple(mean) == stats[0] and tuple(std) == stats[1]:
            return name
    return ",".join(f"{v:g}" for v in mean) + "/" + ",".join(f"{v:g}" for v in std)


def differences(other: str = "seed") -> dict[str, tuple]:
    """{setting: (default recipe's value, the other's)} for the settings that differ."""
    a, b = RECIPES["default"], RECIPES[other]
    return {k: (a[k], b[k]) for k in RECIPE_SETTINGS if a[k] != b[k]}


def help_text() -> str:
    """The --recipe help: the default recipe's settings, then what each other recipe changes."""
    changed = {k for name in RECIPES if name != "default" for k in differences(name)}
    base = ", ".join(
        f"{k.replace('_', '-')} {_shown(RECIPES['default'][k])}" for k in sorted(changed)
    )
    parts = [f"default: {base}"] + [
        f"{name}: "
        + ", ".join(f"{k.replace('_', '-')} {_shown(v[1])}" for k, v in differences(name).items())
        for name in RECIPES
        if name != "default"
    ]
    return "named settings, each a flag of its own (explicit flags win). " + "; ".join(parts)


def _shown(value) -> str:
    return "off" if value is None else str(value)
