"""--init-from: start a fresh run from another run's weights (linear probe, then fine-tune).

The usual use: a frozen-feature run (``--freeze-backbones``) trains the hash layers on the
pretrained towers in seconds; a fine-tuning run that starts from that checkpoint begins with
trained hash layers instead of random ones, so the recipe's small learning rate moves the towers
from a good start instead of spending its epochs on fresh heads.

Only the weights are taken: the optimizer, the epoch counter, the best score and the random state
start afresh (this is a new run, not a resume). The checkpoint must be of the same model: every
architecture field of its model config must equal this run's, and its state dict must load
strictly; a mismatch is refused naming the field (or the keys) and both values.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from cmh.runs.checkpoints import load_checkpoint
from cmh.utils.errors import UserError

# The model-config fields that decide which weights exist and what they mean. Freezing, dropout,
# the initial weights' source and the image pipeline may differ between the two runs.
ARCHITECTURE = (
    "bits",
    "image_encoder",
    "text_encoder",
    "text_model",
    "clip_model",
    "pooling",
    "head_activation",
    "head_norm",
    "bow_dim",
    "bow_hidden",
    "tiny_vocab_size",
    "tokenizer_json",
)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_same_model(saved: dict, cfg: dict, path: Path) -> None:
    """Refuse a checkpoint whose model config differs from ``cfg`` in an architecture field."""
    for key in ARCHITECTURE:
        if saved.get(key) == cfg.get(key):
            continue
        if key == "tokenizer_json":
            raise UserError(
                f"--init-from {path}: its tokenizer differs from this run's (a tiny BERT's "
                "vocabulary is trained on the training captions: use a checkpoint of the same "
                "prepared data and text model)"
            )
        raise UserError(
            f"--init-from {path}: its model has {key} = {_short(saved.get(key))}, this run's has "
            f"{_short(cfg.get(key))}; the weights of one model do not fit the other (change this "
            "run's flags or use another checkpoint)"
        )


def init_from(model: nn.Module, cfg: dict, path: str | Path) -> int:
    """Load the weights of checkpoint ``path`` into ``model`` (built from ``cfg``); returns the
    epoch the checkpoint was saved at."""
    path = Path(path)
    state = load_checkpoint(path)
    check_same_model(state["model_config"], cfg, path)
    unexpected = []
    own = model.state_dict()
    for key, value in state["model"].items():
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != value.shape:
            raise UserError(
                f"--init-from {path}: weight {key} has shape {tuple(value.shape)}, this run's "
                f"model has {tuple(own[key].shape)}"
            )
    missing = [k for k in own if k not in state["model"]]
    if missing or unexpected:
        raise UserError(
            f"--init-from {path}: its weights do not match this run's model (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.load_state_dict(state["model"])
    return int(state.get("epoch", 0))
