"""How long the captions of a prepared folder are in a text model's tokens, and what each
``--max-length`` would cut.

    python scripts/caption_lengths.py --data data/real --text-model FOLDER_OR_HUB_NAME \
        [--lengths 48 64 128] [--split all]

Tokenizes every caption as training does (the tokenizer's own special tokens, so BERT's
``[CLS] caption [SEP]``), without truncation, and prints the number of captions, the longest,
the 50th / 95th / 99th percentiles, and for each ``--lengths`` value how many captions are
longer (``train.py`` would cut them; every caption of an item that has several; the run's log says the same per split). This is where the
``--max-length`` figures of docs/training.md come from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SPLITS = ("all", "train", "val", "query", "database")


def token_lengths(tokenizer, captions: list[str]) -> np.ndarray:
    """Tokens per caption, special tokens included, nothing cut."""
    if not captions:
        return np.zeros(0, dtype=np.int64)
    return np.array([len(ids) for ids in tokenizer(captions)["input_ids"]], dtype=np.int64)


def length_report(lengths: np.ndarray, limits: list[int]) -> str:
    """The printed summary of ``lengths`` and, per limit, how many are longer."""
    if len(lengths) == 0:
        return "0 captions"
    p50, p95, p99 = (int(np.percentile(lengths, q, method="higher")) for q in (50, 95, 99))
    lines = [
        f"{len(lengths)} captions; tokens: max {int(lengths.max())}, "
        f"median {p50}, 95th percentile {p95}, 99th {p99}",
        "max-length  captions cut",
    ]
    lines += [f"{limit:>10}  {int((lengths > limit).sum()):>12}" for limit in limits]
    return "\n".join(lines)


def parse_args(argv):
    """Command-line flags."""
    from cmh.utils.cli import Parser  # no prefix matching; suggests unknown flags

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a prepared folder (data.py prepare)")
    p.add_argument("--text-model", required=True, help="a tokenizer's folder or hub name")
    p.add_argument("--lengths", type=int, nargs="+", default=[48, 64, 128],
                   help="--max-length values to count the cut captions of")  # fmt: skip
    p.add_argument("--split", choices=SPLITS, default="all", help="which items' captions")
    args = p.parse_args(argv)
    if min(args.lengths) < 1:
        p.error(f"--lengths must be >= 1, got {min(args.lengths)}")
    return args


def load_tokenizer(name: str):
    """A fast tokenizer from a folder or the hub; UserError naming ``--text-model`` otherwise."""
    from transformers import AutoTokenizer

    from cmh.models.model_sources import offline_kwargs
    from cmh.utils.errors import UserError

    try:
        return AutoTokenizer.from_pretrained(name, use_fast=True, **offline_kwargs(name))
    except Exception as e:  # offline hub lookups and unreadable folders raise OSError and friends
        raise UserError(
            f"--text-model {name}: cannot load its tokenizer ({type(e).__name__}: {e}); "
            "give a local folder with the tokenizer files"
        ) from e


def main(argv=None) -> int:
    from cmh.data.prepared_folder import load_prepared
    from cmh.utils.errors import UserError

    args = parse_args(argv)
    try:
        data = load_prepared(args.data)
        ids = (
            [item["id"] for item in data.items] if args.split == "all" else data.splits[args.split]
        )
        items = [data.items[row] for row in data.rows(list(ids))]
        captions = [c for item in items for c in (item.get("captions") or [item["caption"]])]
        tokenizer = load_tokenizer(args.text_model)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.data} ({args.split}), tokenizer {args.text_model}")
    print(length_report(token_lengths(tokenizer, captions), sorted(set(args.lengths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
