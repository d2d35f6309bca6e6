"""train.py's command line: the flags in their groups, the reference's defaults and the demo's.

Each group is one function adding its flags (``a`` is ``add_argument``), so ``--help`` shows
them grouped and :func:`parse_args` can parse the command line a second time with every default
suppressed, to record which flags were given (``args.given``: --resume refuses a changed one).
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from cmh.config.recipes import help_text as recipe_help
from cmh.config.recipes import read_toml, recipe, recipe_names, recipe_settings
from cmh.config.typed import from_namespace
from cmh.data.image_transforms import FRAMINGS, NORMS, norm_name
from cmh.models import hashers  # noqa: F401  (the built-in towers register themselves)
from cmh.models.clip_towers import CLIP_MAX_LENGTH
from cmh.models.image_backbones import timm_norm
from cmh.models.tower_registry import get_tower, registered_towers
from cmh.objectives import get_objective, registered_objectives
from cmh.utils import progress
from cmh.utils.cli import Parser
from cmh.utils.errors import UserError

# A flag not given takes, in order: --config FILE's value, [demo] of defaults.toml (with --demo:
# CPU sizes), the --recipe's setting (cmh/config/recipes/NAME.toml), [defaults] of defaults.toml.
# The default --margin is not among them: it scales with the code length (MARGIN_PER_BIT).
_LAYERS = read_toml(Path(__file__).with_name("defaults.toml"), "defaults")
DEFAULTS: dict = _LAYERS["defaults"]
DEMO_DEFAULTS: dict = _LAYERS["demo"]
MARGIN_PER_BIT = 12.0 / 32


def _data_flags(a) -> None:
    a("--data", help="prepared dataset folder (python data.py prepare ...)")
    a(
        "--demo",
        action="store_true",
        help="generate and prepare the demo dataset in --demo-dir, CPU-sized settings "
        "(not with --data: the demo trains on its own data)",
    )
    a("--demo-dir", default="cache/demo", help="where --demo keeps its generated dataset")
    a("--out", help="run folder")
    a("--resume", action="store_true", help="continue the run in --out from its last.pt")
    a("--seed", type=int, default=0, help="seed for initialisation, shuffling and augmentation")
    a(
        "--init-from",
        help="start a fresh run from the weights of this checkpoint (a --freeze-backbones run's "
        "best.pt: trained hash layers, then fine-tune end to end); the optimizer, epochs and "
        "random state start afresh; the same model only (cmh/runs/warm_start.py)",
    )
    a("--recipe", choices=tuple(recipe_names()), default="default", help=recipe_help())
    a("--config", help="a TOML file of flag values (keys: flag names, e.g. lr = 1e-4): they fill "
      "the flags not given, before --demo, the recipe and the defaults")


def _backbone_flags(a) -> None:
    """The image model, its weights, CLIP and the head's dropout (part of the model group)."""
    a(
        "--image-model",
        default="resnet18",
        help="image backbone, from the registered image towers (cmh/models/): "
        + "; ".join(f"{tw.name}: {tw.summary}" for tw in registered_towers("image"))
        + ". The hash layer goes on its pooled feature",
    )
    a(
        "--image-weights",
        help="imagenet (torchvision's DEFAULT weights of --image-model; timm's pretrained) | none "
        "| PATH to a state dict of --image-model, by key or by position",
    )
    a(
        "--backbone",
        choices=("separate", "clip"),
        default="separate",
        help="separate: --image-model and --text-model; clip: both towers from one CLIP "
        "(--clip-model), its statistics, 224 px weights and tokenizer (--max-length 32)",
    )
    a(
        "--clip-model",
        default="openai/clip-vit-base-patch32",
        help="--backbone clip: hub name, local folder of a transformers CLIPModel, or 'tiny' (a "
        "small random CLIP with a vocabulary built from the training captions)",
    )
    a(
        "--head-dropout",
        type=float,
        default=0.0,
        help="dropout before each hash layer (0.2 in the CLIP hashing toolboxes)",
    )
    a(
        "--head-norm",
        choices=("none", "batchnorm"),
        help="centre and scale each hash layer's inputs (BatchNorm1d without affine parameters; "
        "at evaluation an affine map folded into the layer). Default: the objective's ("
        + ", ".join(f"{o.name}: {o.head_norm}" for o in registered_objectives())
        + "); DCMH's balance term collapses the codes on raw non-negative backbone features "
        "(docs/objectives.md)",
    )


def _model_flags(a) -> None:
    a("--bits", type=int, help="code length")
    a(
        "--modalities",
        choices=("both", "text"),
        default="both",
        help="both towers, or the text tower alone (T->T loss and metric)",
    )
    _backbone_flags(a)
    a("--image-size", type=int, help="image side in pixels")
    a(
        "--image-framing",
        choices=FRAMINGS,
        help="squash-crop: train on a random crop of the image squashed to 1.143x the side, "
        "evaluate on it squashed to the side; squash: exactly the side, no crop (both flip in "
        "training)",
    )
    a(
        "--image-norm",
        choices=tuple(NORMS),
        help="normalisation mean/std (a timm model's own, CLIP's with --backbone clip)",
    )
    a(
        "--freeze-image-backbone",
        action="store_true",
        help="keep the ResNet-18 fixed but run it every step on augmented images; only the image "
        "hash layer trains (for cached features of both towers, see --freeze-backbones)",
    )
    a(
        "--image-batchnorm",
        choices=("train", "frozen"),
        default="train",
        help="train: the image backbone's BatchNorm layers use and update batch statistics; "
        "frozen: they keep their pretrained running statistics (their scale and shift still "
        "train), for fine-tuning a pretrained backbone at a small batch on unlike images",
    )
    a(
        "--text-encoder",
        type=_text_tower_name,
        default="bert",
        metavar="NAME",
        help="text tower, from the registered text towers (cmh/models/): "
        + "; ".join(f"{tw.name}: {tw.summary}" for tw in registered_towers("text")),
    )
    a("--text-model", help="hub name, local folder, or 'tiny'")
    a(
        "--pooling",
        choices=("cls", "mean"),
        default="cls",
        help="text feature: [CLS] or masked mean",
    )
    a(
        "--max-length",
        type=int,
        help="tokens per caption, [CLS] and [SEP] included; 0: the text model's limit, never cut "
        "(32 with --backbone clip)",
    )
    a(
        "--text-dropout",
        type=float,
        help="dropout inside the text encoder (default: the model's own, 0.1 for BERT)",
    )


def _loss_flags(a) -> None:
    a(
        "--margin",
        type=float,
        help="triplet margin on squared distances (default 12 * bits / 32: 6 at 16 bits, "
        "12 at 32, 24 at 64)",
    )
    a(
        "--objective",
        type=_objective_name,
        metavar="NAME",
        help="what training minimises, one of the registered objectives (cmh/objectives/): "
        + "; ".join(f"{o.name}: {o.summary}" for o in registered_objectives())
        + ".",
    )


def _registered(flag: str, lookup):
    """An argparse type: a name ``lookup`` finds, else argparse's error with its message."""

    def name_of(name: str) -> str:
        try:
            return lookup(name).name
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag} ")) from e

    return name_of


_text_tower_name = _registered("--text-encoder", lambda n: get_tower("text", n, "--text-encoder"))
_objective_name = _registered("--objective", get_objective)


def _optimisation_flags(a) -> None:
    a("--epochs", type=int, help="epochs")
    a("--batch-size", type=int, help="pairs per step")
    a(
        "--lr",
        type=float,
        help="learning rate of both towers (--demo's is an Adam rate: not used with SGD)",
    )
    a("--weight-decay", type=float, help="weight decay (L2)")
    a(
        "--solver",
        choices=("adam", "sgd"),
        help="Adam, or plain SGD",
    )
    a(
        "--lr-schedule",
        choices=("constant", "linear"),
        help="constant, or falling linearly from --lr at the first epoch to --lr-end at the last",
    )
    a("--lr-end", type=float, default=1e-6, help="the last epoch's learning rate (linear)")
    a(
        "--optimizer",
        choices=("joint", "separate"),
        default="joint",
        help="joint: one learning rate; separate: --image-lr and --text-lr per tower",
    )
    a("--image-lr", type=float, help="image tower learning rate with --optimizer separate")
    a("--text-lr", type=float, help="text tower learning rate with --optimizer separate")
    a("--eval-every", type=int, help="validate every N epochs")
    a(
        "--query-every",
        type=int,
        help="the reference's protocol, reported only: every K epochs encode the queries against "
        "the database, log to query_curve.jsonl; results.json gets seed_protocol_* (the best "
        "epoch on the queries). Never used for selection",
    )


def _frozen_flags(a) -> None:
    a(
        "--freeze-backbones",
        action="store_true",
        help="frozen-feature mode: extract both backbones' features once (cached on disk), "
        "train only the hash layers",
    )
    a("--feature-cache", help="folder for frozen features (default DATA/features)")


def _hardware_flags(a) -> None:
    a("--device", default="auto", help="auto | cpu | cuda")
    progress.add_flag(a)
    a("--amp", action=argparse.BooleanOptionalAction, default=False, help="bf16 autocast on CUDA")
    a("--num-workers", type=int, default=0, help="data loader worker processes")
    a(
        "--image-cache",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="read images from a uint8 cache (DATA/image_cache, built once) and crop, flip and "
        "normalise them on the device (see cmh/data/caches/uint8_cache.py)",
    )
    a(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the training forward pass (pays a compile time once; worth it on GPUs)",
    )
    a(
        "--cuda-graphs",
        action="store_true",
        help="capture the whole training step (forward, loss, backward, Adam) once as a CUDA "
        "graph and replay it: batches of exactly --batch-size (the last partial batch of each "
        "epoch dropped), token ids padded to the split's longest caption; without CUDA the same static step "
        "runs uncaptured (cmh/engine/graph_step.py)",
    )
    a(
        "--resident-data",
        action="store_true",
        help="hold the training split on the device (uint8 images of the image cache, token "
        "ids, labels) and gather every batch there; implies --image-cache; the last partial "
        "batch of each epoch dropped (cmh/data/caches/resident_batches.py)",
    )
    a(
        "--global-triplets",
        action="store_true",
        help="under torchrun: gather codes from all ranks so triplets span the global batch "
        "(default: each rank's slice)",
    )


def flag_groups() -> list[tuple[str, object]]:
    """(title, function adding the group's flags): the run's groups, then one group for each
    registered objective that has flags of its own."""
    objectives = [(f"objective {o.name}", o.add_flags) for o in registered_objectives()]
    return [
        ("data and run", _data_flags),
        ("model", _model_flags),
        ("loss", _loss_flags),
        *[(title, add) for title, add in objectives if add is not None],
        ("optimisation", _optimisation_flags),
        ("frozen features", _frozen_flags),
        ("hardware and distributed", _hardware_flags),
    ]


def parser(defaults: bool = True, description: str | None = None) -> argparse.ArgumentParser:
    """train.py's flags; with defaults=False every default is suppressed, so a parse returns only
    the flags on the command line."""
    p = Parser(description=description, prog="train.py")
    for title, add_flags in flag_groups():
        add = p.add_argument_group(title).add_argument
        add_flags(add if defaults else _without_default(add))
    for action in p._actions:
        if (note := default_note(action.dest)) is not None:
            action.help = f"{action.help} ({note})"
    return p


def default_note(key: str) -> str | None:
    """Where a layered flag's default comes from, read from the layers themselves: "default: X;
    --recipe seed: Y; --demo: Z" (None for a flag no layer sets)."""
    base = recipe("default")[key] if key in recipe_settings() else DEFAULTS.get(key)
    parts = [f"default: {_shown(base)}"] if key in recipe_settings() or key in DEFAULTS else []
    for name in recipe_names()[1:]:
        if key in recipe_settings() and recipe(name)[key] != base:
            parts.append(f"--recipe {name}: {_shown(recipe(name)[key])}")
    if key in DEMO_DEFAULTS:
        parts.append(f"--demo: {_shown(DEMO_DEFAULTS[key])}")
    return "; ".join(parts) or None


def _shown(value) -> str:
    return "off" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def read_config(path: str, p: argparse.ArgumentParser) -> dict:
    """The flag values of a --config TOML file, each checked as its flag would be; a bad file,
    key or value ends the parse with a message naming the file and the key."""
    try:
        data = read_toml(Path(path), "--config")
    except UserError as e:
        p.error(str(e))
    actions = {a.dest: a for a in p._actions if a.dest not in ("help", "config")}
    values = {}
    for key, value in data.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            close = difflib.get_close_matches(dest, list(actions), n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            p.error(f"--config {path}: unknown key {key!r}{hint}")
        values[dest] = _config_value(actions[dest], value, f"--config {path}: {key}", p)
    return values


def _config_value(action: argparse.Action, value, where: str, p: argparse.ArgumentParser):
    """``value`` as the flag of ``action`` takes it (its type and choices)."""
    switch = action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction)
    if switch != isinstance(value, bool) or isinstance(value, dict | list):
        p.error(f"{where} = {value!r}: expected {'true or false' if switch else 'a value'}")
    if not switch and action.type is not None:
        try:
            value = action.type(str(value))
        except (ValueError, argparse.ArgumentTypeError) as e:
            p.error(f"{where} = {value!r}: {e}")
    if action.choices is not None and value not in action.choices:
        p.error(f"{where} = {value!r}: expected one of {', '.join(map(str, action.choices))}")
    return value


def _without_default(add):
    return lambda *flags, **kw: add(*flags, **{**kw, "default": argparse.SUPPRESS})


def demo_layer(args: argparse.Namespace) -> dict:
    """DEMO_DEFAULTS, less its Adam learning rate when the run's solver is SGD (given, or the
    recipe's, as under --recipe dcmh): 3e-4 is an Adam step size, and the SGD schedule's own
    learning rate (the recipe's, or DEFAULTS') is the one that goes with it."""
    solver = args.solver or recipe(args.recipe)["solver"]
    return {k: v for k, v in DEMO_DEFAULTS.items() if not (k == "lr" and solver == "sgd")}


# Fields of the run's configuration that are no flag: the flags given on the command line, and
# whether --amp was asked for where it cannot run (cmh.runs.run_folder.resolve_amp).
EXTRA_FIELDS = (("given", list, ()), ("amp_requested", bool, None))


def parse_args(argv=None, description: str | None = None):
    """The run's typed configuration (cmh.config.typed: a TrainConfig, one field per flag),
    every layer of defaults filled in; ``given`` lists the flags on the command line (also one
    given at its default value)."""
    p = parser(description=description)
    args = from_namespace("TrainConfig", p, p.parse_args(argv), EXTRA_FIELDS)
    args.given = sorted(vars(parser(defaults=False).parse_args(argv)))
    config = read_config(args.config, p) if args.config else {}
    for key, value in config.items():  # a user's configuration: over every default
        if key not in args.given:
            setattr(args, key, value)
    for layer in (demo_layer(args) if args.demo else {}, recipe(args.recipe), DEFAULTS):
        for key, value in layer.items():
            if args.get(key) is None:
                setattr(args, key, value)
    if args.margin is None:
        args.margin = MARGIN_PER_BIT * args.bits
    if args.head_norm is None:
        args.head_norm = get_objective(args.objective).head_norm
    backbone_defaults(args, set(args.given) | set(config))
    return args


def backbone_defaults(args: argparse.Namespace, given: set[str]) -> None:
    """What a backbone brings unless given (on the command line or in --config): CLIP's
    statistics and --max-length 32 (the CLIP toolboxes'), a timm model's pretrained-config
    mean/std (as "r,g,b/r,g,b")."""
    if args.backbone == "clip":
        if "max_length" not in given:
            args.max_length = CLIP_MAX_LENGTH
        if "image_norm" not in given:
            args.image_norm = "clip"
    elif "image_norm" not in given and (stats := timm_norm(args.image_model)) is not None:
        args.image_norm = norm_name(*stats)
