"""``python data.py``'s command line: the ``prepare`` flags of every input, the ``demo`` command,
and the demo dataset made once for ``train.py --demo``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cmh.config.typed import from_namespace
from cmh.data import prepare as prepare_step
from cmh.data.published_splits import DATASETS, PROTOCOLS
from cmh.data.sources.registry import flag, registered_sources
from cmh.utils.cli import Parser
from cmh.utils.errors import UserError
from cmh.utils.folder_lock import file_lock

DESCRIPTION = "The data side of cross-modal hashing on IAPR TC-12: prepare a dataset once, then read it."


def add_mat_flags(p: argparse.ArgumentParser) -> None:
    """``prepare --mat``: a benchmark set in MATLAB files (:mod:`cmh.data.sources.mat_prepare`)."""
    a = p.add_argument
    a(
        "--mat",
        type=Path,
        help="a benchmark set in MATLAB files: a DCMH .mat file or folder of "
        "*-iall/-lall/-yall.mat files (--format dcmh), or a folder of index.mat, caption.mat, "
        "label.mat (--format clip)",
    )
    a("--format", choices=("dcmh", "clip"), help="--mat: the layout of the files")
    a(
        "--dataset",
        choices=DATASETS,
        help="--mat: the benchmark (checks the label width, picks the protocol's split sizes)",
    )
    a(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="--mat: split sizes; dcmh (the default): "
        "query/train 2000/10000, NUS-WIDE 2100/10500, COCO 5000/10000; clip: 5000/10000",
    )


def add_twemoji_flags(p: argparse.ArgumentParser) -> None:
    """``prepare --twemoji``: Twemoji images with emojilib keywords (:mod:`cmh.data.sources.twemoji`)."""
    p.add_argument(
        "--twemoji",
        type=Path,
        help="the unpacked emoji-datasource-twitter npm package (emoji.json, img/twitter/64/); "
        "split defaults: 200 query, 1000 train, 100 val",
    )
    p.add_argument(
        "--emojilib",
        type=Path,
        help="--twemoji: the unpacked emojilib npm package (dist/emoji-en-US.json keywords)",
    )


def add_prepare_flags(p: argparse.ArgumentParser) -> None:
    """``prepare``: every input's flags and the ones all inputs share."""
    add_mat_flags(p)
    add_twemoji_flags(p)
    a = p.add_argument
    a("--iapr-root", type=Path, help="raw: folder with images/NN/ID.jpg, annotations_complete_eng/")
    a("--saiapr-root", type=Path, help="raw: SAIAPR folder with NN/labels.txt (and wlist.txt)")
    a("--saiapr-wlist", type=Path, help="raw: label dictionary (default SAIAPR_ROOT/wlist.txt)")
    a("--lists", type=Path, help="lists: folder with iapr_train, iapr_test, iapr_retrieval")
    a(
        "--images",
        type=Path,
        help="lists: folder the lists' NN/ID.jpg paths are relative to; "
        "--mat --format clip: folder the paths of index.mat are found under",
    )
    a("--annotations", type=Path, help="lists: folder with NN/ID.eng caption files")
    a("--label-names", type=Path, help="lists: label names, one per line (default label_000..)")
    a("--bow-columns", type=int, help="lists: bag-of-words columns per line (default 2912)")
    a("--label-columns", type=int, help="lists: label-bit columns per line (default 255)")
    a("--out", type=Path, required=True, help="output folder for the prepared dataset")
    a(
        "--n-query",
        type=int,
        help="raw: number of query items (default 2000; --mat: the protocol's; --twemoji: 200)",
    )
    a(
        "--n-train",
        type=int,
        help="raw: training items drawn from the database (default 10000; --mat: the protocol's; "
        "--twemoji: 1000)",
    )
    a(
        "--n-val",
        type=int,
        help="validation items from database minus train (default 1000; --twemoji: 100)",
    )
    a("--seed", type=int, default=0, help="seed of the split")
    a("--vocab-size", type=int, default=2912, help="bag-of-words vocabulary size")
    a(
        "--check-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode every image with PIL and drop unreadable ones (off: only check that the "
        "file exists; a bad image then stops training, naming the item and file)",
    )
    a("--strict", action="store_true", help="fail on the first item that would be dropped")
    a("--overwrite", action="store_true", help="replace a prepared dataset already in --out")


def parse_args(argv: list[str] | None = None):
    """The ``prepare`` or ``demo`` command as its typed configuration (cmh.config.typed: a
    PrepareConfig or DemoConfig, one field per flag of that command, and ``command``)."""
    parser = Parser(description=DESCRIPTION, prog="data.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "prepare",
        help="read raw IAPR/SAIAPR files, iapr_* lists, a .mat set or Twemoji, write --out",
        description="The input is named by its flags; the registered data sources "
        "(cmh/data/sources/registry.py): "
        + "; ".join(f"{s.name} ({flag(s.selects[0])}): {s.summary}" for s in registered_sources()),
    )
    add_prepare_flags(p)
    d = sub.add_parser("demo", help="write a synthetic dataset to --out and prepare it")
    d.add_argument("--out", type=Path, required=True, help="output folder")
    d.add_argument("--n-items", type=int, default=1500, help="number of synthetic items")
    d.add_argument("--image-size", type=int, default=96, help="side of the synthetic images")
    d.add_argument("--seed", type=int, default=0, help="seed of the generator and the split")
    r = sub.add_parser("relocate", help="point a prepared folder that was moved at its images again",
                       description="Rewrite the image paths of a prepared folder moved away from its "
                       "images so that they name the same files from where it is now (no new "
                       "prepare; cmh/data/relocate.py).")  # fmt: skip
    r.add_argument("--data", type=Path, required=True, help="the prepared folder, where it is now")
    r.add_argument("--from", dest="old", type=Path,
                   help="where it was prepared (default: summary.json's prepared_at)")  # fmt: skip
    ns = parser.parse_args(argv)
    command = {"prepare": p, "demo": d, "relocate": r}[ns.command]
    name = f"{ns.command.capitalize()}Config"
    return from_namespace(name, command, ns, (("command", str, ns.command),))


def run_demo(args: argparse.Namespace) -> dict:
    """Generate the synthetic raw layout in ``args.out``, prepare it into ``args.out/prepared``
    with 10% query, 50% train and 10% val items (the real protocol: 10% / 50% / 5%)."""
    from cmh.data.sources.demo_generator import generate_demo  # only this subcommand needs it

    roots = generate_demo(
        args.out, n_items=args.n_items, image_size=args.image_size, seed=args.seed
    )
    n = args.n_items
    flags = {"--iapr-root": roots["iapr_root"], "--saiapr-root": roots["saiapr_root"],
             "--out": args.out / "prepared", "--n-query": max(1, n // 10), "--n-train": n // 2,
             "--n-val": n // 10, "--seed": args.seed}  # fmt: skip
    argv = ["prepare", "--overwrite", *(str(x) for pair in flags.items() for x in pair)]
    print("python data.py " + " ".join(argv))
    return prepare_step.prepare(parse_args(argv))


def ensure_demo(demo_dir: str | Path) -> Path:
    """The prepared demo dataset in ``demo_dir/prepared``, generated and prepared once
    (``python data.py demo --out demo_dir``); later calls reuse it."""
    root = Path(demo_dir)
    if (root / "prepared" / "summary.json").is_file():
        return root / "prepared"
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".demo.lock"):  # runs started together: one generates, the others wait
        if not (root / "prepared" / "summary.json").is_file():
            logging.getLogger("train").info("generating the demo dataset in %s (once)", root)
            try:
                run_demo(parse_args(["demo", "--out", str(root)]))
            except UserError as e:
                raise UserError(f"could not build the demo dataset in {root}: {e}") from e
    return root / "prepared"
