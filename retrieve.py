"""Retrieval for people: index hash codes with FAISS, add to them, query them, serve a page.

    python retrieve.py index --checkpoint RUN/best.pt --out INDEX_DIR [--data DIR] [--split database]
    python retrieve.py index --checkpoint RUN/best.pt --out INDEX_DIR --images DIR [--texts FILE]
    python retrieve.py add --index INDEX_DIR [--images DIR] [--texts FILE]
    python retrieve.py query --index INDEX_DIR (--text "..." | --image PATH | --item ID) [--k 10]
    python retrieve.py serve --index INDEX_DIR [--port 8000] [--host 127.0.0.1]

`index` encodes a split of a prepared dataset (evaluate.py's codes) or a collection of your own
(`cmh.retrieval.collection`: a folder of images, a file of captions) and writes an index folder
(`cmh.retrieval.index_folder`: items, packed codes, one FAISS binary index per modality, of
`--kind` flat (exact, the default), hnsw, ivf or mih, parameters chosen from the code length and
the number of codes unless given: `cmh.retrieval.binary_index`). `add` appends a collection's
new items without re-encoding the old ones. `query` prints the ranking (by Hamming distance,
ties by database position: the ranking evaluate.py scores) and `--html` writes a page; `serve`
is the live page (`cmh.retrieval.server`). The searching itself is `cmh.retrieval.searching`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cmh.data.prepared_folder import check_prepared_folder
from cmh.evaluation.from_checkpoint import encode_splits, load_for_evaluation
from cmh.retrieval.binary_index import KINDS, MODALITIES, describe
from cmh.retrieval.collection import add_to_index, addable_index, index_collection, split_items
from cmh.retrieval.hasher import Hasher
from cmh.retrieval.index_folder import (
    check_index_folder,
    check_out,
    load_index,
    model_meta,
    write_index_dir,
)
from cmh.retrieval.results_page import format_results, write_html
from cmh.retrieval.searching import Searcher
from cmh.runs.checkpoints import check_checkpoint_file
from cmh.utils import progress
from cmh.utils.cli import Parser
from cmh.utils.errors import UserError, check_all

PARAM_FLAGS = ("hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe", "nhash", "b", "nflip")


# ------------------------------------------------------------------ index, add
def given_params(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name, None) for name in PARAM_FLAGS}


def run_index(args: argparse.Namespace) -> dict:
    """Encode a split of --data, or --images / --texts, with --checkpoint into --out; its meta."""
    out = Path(args.out)
    check_all(lambda: check_out(out, args.overwrite),  # cheap checks first, every problem at once
              lambda: check_checkpoint_file(Path(args.checkpoint)),
              lambda: args.data is None or check_prepared_folder(args.data))  # fmt: skip
    if args.images is not None or args.texts is not None:
        if args.split != "database":
            raise UserError(f"--split {args.split} picks a split of a prepared dataset; a "
                            "collection (--images / --texts) is indexed whole")  # fmt: skip
        hasher = Hasher.load(args.checkpoint, args.device, data=args.data)
        return index_collection(hasher, out, args.images, args.texts, args.kind, given_params(args),
                                args.strict, args.overwrite, args.batch_size, say=note)  # fmt: skip
    loaded = load_for_evaluation(args.checkpoint, args.data, args.device)
    encoded = encode_splits(loaded, [args.split], args.batch_size, args.num_workers)[args.split]
    table, packed = split_items(loaded.data, encoded)
    meta = model_meta(loaded.path, loaded.state, loaded.cfg)
    meta |= {"split": args.split, "data": str(Path(loaded.data.root).resolve()), "kind": args.kind}
    return write_index_dir(out, table, packed, meta | {"given": given_params(args)}, args.overwrite)


def run_add(args: argparse.Namespace) -> dict:
    """Append --images / --texts to the collection index --index: only items not in it yet."""
    index = addable_index(args.index, args.images, args.texts)  # before any model is loaded
    searcher = Searcher(index, args.checkpoint, args.device)
    return add_to_index(searcher.hasher, index, args.images, args.texts, args.strict,
                        args.batch_size, say=note)  # fmt: skip


def note(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------ query
def check_query_image(image: str | None) -> None:
    if image is not None and not Path(image).is_file():
        raise UserError(f"--image {image}: no such file")


def run_query(args: argparse.Namespace) -> tuple[dict, list[dict], object]:
    """Search --index with --text, --image or --item; (query info, ranked result rows, index)."""
    if args.text is not None and not args.text.strip():
        raise UserError("--text is empty; give the words to search for")
    check_all(lambda: check_index_folder(args.index),  # cheap checks first, all problems at once
              lambda: check_query_image(args.image))  # fmt: skip
    searcher = Searcher(load_index(args.index), args.checkpoint, args.device)
    if args.checkpoint:
        searcher.hasher  # noqa: B018  (a checkpoint given is checked even when stored codes suffice)
    params = {k: v for k, v in given_params(args).items() if v is not None}
    if args.item is not None:
        modality = args.item_modality
        info, rows = searcher.by_item(args.item, args.k, modality, params, args.data)
    elif args.image is not None:
        info, rows = searcher.by_image(args.image, args.k, params, name=f"--image {args.image}")
    else:
        info, rows = searcher.by_text(args.text, args.k, params)
    return info, rows, searcher.index


# ------------------------------------------------------------------ CLI
USAGE = """Search a trained model's hash codes by text, image or item.

    python retrieve.py index --checkpoint RUN/best.pt --out INDEX_DIR     # a split, once per model
    python retrieve.py index --checkpoint RUN/best.pt --out INDEX_DIR --images PHOTOS/
    python retrieve.py add --index INDEX_DIR --images PHOTOS/             # only the new ones
    python retrieve.py query --index INDEX_DIR --text "two people on a beach" --html page.html
    python retrieve.py query --index INDEX_DIR --item 123 --k 10          # an item as the query
    python retrieve.py serve --index INDEX_DIR                            # a search page

`index` encodes a split (default: the database) or a collection (--images DIR, --texts FILE)
and stores its codes; `query` ranks them by Hamming distance to the query's code and prints
rank, id, distance and caption. A text query searches the image codes (the text codes of an
index without images); an image query the text codes (the image codes of an index without
captions). `python retrieve.py COMMAND --help` lists every option."""


def add_index_flags(sp, build: bool) -> None:
    """--kind and the index parameters (build), or the search parameters a query may override."""
    if build:
        sp.add_argument("--kind", default="flat", choices=KINDS,
                        help="flat (exact), hnsw, ivf or mih (multi-index hashing)")  # fmt: skip
        sp.add_argument("--hnsw-m", type=int, help="HNSW neighbours per node (16)")
        sp.add_argument("--ef-construction", type=int, help="HNSW build beam width (40)")
        sp.add_argument("--nlist", type=int, help="IVF lists (about sqrt(codes))")
        sp.add_argument("--nhash", type=int, help="MIH substrings (bits // b)")
        sp.add_argument("--b", type=int, help="MIH bits per substring (log2(codes), 8..32)")
    what = "default" if build else "default: the index's"
    sp.add_argument("--ef-search", type=int, help=f"HNSW search beam ({what}: 128)")
    sp.add_argument("--nprobe", type=int, help=f"IVF lists searched ({what}: 16)")
    sp.add_argument("--nflip", type=int, help=f"MIH bits flipped per substring ({what}: 1)")


def add_collection_flags(sp) -> None:
    sp.add_argument("--images", help="a folder of images (recursive; ids: relative paths)")
    sp.add_argument("--texts", help="captions: one per line (ids FILE:LINE) or JSONL {id, text}")
    sp.add_argument("--strict", action="store_true", help="refuse unreadable images (default: list and skip them)")
    sp.add_argument("--batch-size", type=int, default=64, help="encoding batch size")


def add_common(sp) -> None:
    sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device")
    progress.add_flag(sp.add_argument)


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(description=USAGE)
    sub = p.add_subparsers(dest="command", required=True)
    ix = sub.add_parser("index", help="encode a split or a collection and write an index folder")
    ix.add_argument("--checkpoint", required=True, help="checkpoint file (RUN/best.pt)")
    ix.add_argument("--out", required=True, help="index folder to write")
    ix.add_argument("--data", help="prepared dataset folder (default: the one the run trained on)")
    ix.add_argument("--split", default="database", help="split to index (without --images / --texts)")
    add_collection_flags(ix)
    ix.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    ix.add_argument("--overwrite", action="store_true", help="replace an index at --out")
    add_index_flags(ix, build=True)
    ad = sub.add_parser("add", help="append new images / captions to a collection's index")
    ad.add_argument("--index", required=True, help="index folder written by `index --images/--texts`")
    ad.add_argument("--checkpoint", help="checkpoint (default: the index's; must be the same)")
    add_collection_flags(ad)
    qp = sub.add_parser("query", help="search an index folder by text, image or item")
    qp.add_argument("--index", required=True, help="index folder written by `index`")
    what = qp.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="free-text query; searches the image codes")
    what.add_argument("--image", help="image file query; searches the text codes")
    what.add_argument("--item", help="an item id as the query (split items: marks relevance)")
    qp.add_argument("--item-modality", choices=MODALITIES,
                    help="query with the item's image or caption (default: its image when it has one)")  # fmt: skip
    qp.add_argument("--k", type=int, default=10, help="number of results")
    qp.add_argument("--checkpoint", help="checkpoint (default: the index's; must be the same)")
    qp.add_argument("--data", help="prepared folder for an --item not in the index (default: the index's)")
    qp.add_argument("--html", type=Path, help="write a results page here")
    qp.add_argument("--embed", action=argparse.BooleanOptionalAction, default=False,
                    help="--html: inline the images as small JPEG thumbnails, so the page can be moved")  # fmt: skip
    add_index_flags(qp, build=False)
    sv = sub.add_parser("serve", help="a local search page of an index folder")
    sv.add_argument("--index", required=True, help="index folder written by `index`")
    sv.add_argument("--checkpoint", help="checkpoint (default: the index's; must be the same)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    sv.add_argument("--k", type=int, default=20, help="results per search")
    sv.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image upload accepted")
    for sp in (ix, ad, qp, sv):
        add_common(sp)
    args = p.parse_args(argv)
    check_numbers(args)
    return args


def check_numbers(args: argparse.Namespace) -> None:
    least = {"nlist": 0, "nflip": 0, "port": 0, "max_upload_mb": 1e-9}
    for flag in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "batch_size", "k", "nlist",
                 "nhash", "b", "nflip", "port", "max_upload_mb"):  # fmt: skip
        value = getattr(args, flag, None)
        if value is not None and value < least.get(flag, 1):
            raise UserError(f"--{flag.replace('_', '-')} must be >= {least.get(flag, 1):g}, got {value}")


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        progress.configure(args.progress)
        if args.command == "index":
            meta = run_index(args)
            built = describe(meta["kind"], meta["params"])
            print(f"indexed {meta['n_items']} items of {meta['split']} ({meta['bits']} bits, "
                  f"{built}, {'+'.join(meta['modalities'])}) from {meta['checkpoint']} "
                  f"(epoch {meta['epoch']}) into {args.out}\n"
                  f'next: python retrieve.py query --index {args.out} --text "a few words" '
                  f"--html {Path(args.out).parent / 'results.html'}")  # fmt: skip
        elif args.command == "add":
            meta = run_add(args)
            counts = ", ".join(f"{n} {m}" for m, n in meta.get("counts", {}).items())
            print(f"{args.index} now holds {meta['n_items']} items ({counts} codes)")
        elif args.command == "serve":
            from cmh.retrieval.server import serve

            return serve(args.index, args.checkpoint, args.device, args.host, args.port, args.k,
                         int(args.max_upload_mb * 2**20))  # fmt: skip
        else:
            info, rows, index = run_query(args)
            print(format_results(info, rows, index.meta, index.items["label_names"]))
            if args.html:
                write_html(args.html, info, rows, index.meta, embed=args.embed)
                inlined = " (images inlined)" if args.embed else ""
                print(f"wrote {args.html}{inlined}", file=sys.stderr)  # stdout: the results alone
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
