"""Retrieval for people: index a split's hash codes with FAISS, query it by text, image or item.

    python retrieve.py index --checkpoint RUN/best.pt --out INDEX_DIR [--data DIR]
                             [--split database] [--kind flat|hnsw|ivf]
    python retrieve.py query --index INDEX_DIR (--text "two people on a beach" | --image PATH.jpg
                             | --item ID) [--k 10] [--html OUT.html]

`index` encodes the split with both towers (evaluate.encode: the sign of the tanh outputs, 0 -> +1)
and stores each modality's codes, packed 8 bits a byte (bit set for +1, zero padding to whole
bytes), in a FAISS binary index: IndexBinaryFlat (exact, the default), IndexBinaryHNSW or
IndexBinaryIVF (approximate, for large databases). INDEX_DIR holds `image.faiss`, `text.faiss`,
`codes.npz` (the packed codes), `items.json` (ids, captions, image paths, label columns and names)
and `meta.json` (bits, index kind and parameters, split, data folder, checkpoint path, model config
summary and the checkpoint's fingerprint). It is written under a temporary name, then renamed.

`query` encodes the query with its tower (`--item` takes the item's stored code, or encodes it when
the item is in another split), searches the other modality's index and prints rank, id, Hamming
distance, relevance (`--item` only: shares a label with the query) and caption. A checkpoint whose
fingerprint differs from the index's, or whose bits differ, is refused.

Ranking: by Hamming distance, ties by database position (the split's order, i.e. sorted ids), the
ranking evaluate.py scores. FAISS does not order equal distances by position, so `search` asks for
k' = max(2k, k + 32) results, doubles k' until the k'-th distance exceeds the k-th (then every item
tied with the k-th is among them) and sorts them by (distance, position). With the flat index this
is exactly the brute-force ranking; the approximate indexes order the items they find the same way.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import faiss
import numpy as np
import torch
from PIL import Image

from cmh.data.bag_of_words import bow_vector
from cmh.data.image_transforms import image_transform
from cmh.data.prepared_folder import load_prepared
from cmh.evaluation.from_checkpoint import Loaded, encode_splits, load_for_evaluation
from cmh.models.hashers import load_model
from cmh.retrieval.binary_index import (
    FORMAT_VERSION,
    KINDS,
    MODALITIES,
    Index,
    auto_nlist,
    check_index_folder,
    check_out,
    fingerprint,
    load_index,
    pack_codes,
    search,
    tied_beyond,
    write_index_dir,
)
from cmh.retrieval.results_page import format_results, result_rows, write_html
from cmh.runs.checkpoints import load_checkpoint
from cmh.utils import progress
from cmh.utils.cli import Parser
from cmh.utils.devices import resolve_device
from cmh.utils.errors import UserError, check_all
from cmh.utils.torch_ops import binarize

MODEL_SUMMARY = ("bits", "image_encoder", "text_encoder", "text_model", "image_size", "max_length")


# ------------------------------------------------------------------ index
def run_index(args: argparse.Namespace) -> dict:
    """Encode --split of --data with --checkpoint and write the index folder --out; its meta."""
    check_out(Path(args.out), args.overwrite)
    loaded = load_for_evaluation(args.checkpoint, args.data, args.device)
    encoded = encode_splits(loaded, [args.split], args.batch_size, args.num_workers)[args.split]
    state, cfg = loaded.state, loaded.cfg
    params = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction}
    params |= {"ef_search": args.ef_search or 128, "nprobe": args.nprobe or 16}
    params["nlist"] = args.nlist or auto_nlist(len(encoded["ids"]))
    summary = {key: cfg.to_dict()[key] for key in MODEL_SUMMARY} | {"labels": len(cfg.label_names)}
    meta = {
        "format_version": FORMAT_VERSION,
        "bits": cfg.bits,
        "kind": args.kind,
        "params": params,
        "split": args.split,
        "data": str(Path(loaded.data.root).resolve()),
        "n_items": len(encoded["ids"]),
        "modalities": [m for m in MODALITIES if m in encoded],
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "fingerprint": fingerprint(state),
        "epoch": state.get("epoch"),
        "model": summary,
        "faiss": faiss.__version__,
    }
    write_index_dir(Path(args.out), encoded, loaded.data, meta, args.overwrite)
    return meta


def load_query_model(index: Index, checkpoint: str | None, device: torch.device):
    """(model, tokenizer, cfg) from --checkpoint or the index's; refused if it differs."""
    path, meta = checkpoint or index.meta["checkpoint"], index.meta
    if checkpoint is None and not Path(path).is_file():
        raise UserError(
            f"index {index.root} was built with checkpoint {path}, which is gone; "
            "pass --checkpoint (the same model) or rebuild the index"
        )
    state = load_checkpoint(path)
    bits = state["model_config"].get("bits")
    if bits != meta["bits"]:
        raise UserError(
            f"index {index.root} holds {meta['bits']}-bit codes; checkpoint {path} "
            f"makes {bits}-bit codes: build an index with it or use its checkpoint"
        )
    found = fingerprint(state)
    if found != meta["fingerprint"]:
        raise UserError(
            f"index {index.root} was built with checkpoint {meta['checkpoint']} (sha256 "
            f"{meta['fingerprint'][:16]}); checkpoint {path} (sha256 {found[:16]}) differs: "
            "rebuild the index with `retrieve.py index --checkpoint ...`"
        )
    return load_model(state, device)


@torch.no_grad()
def encode_query(
    model, tokenizer, cfg, text: str | None, image: str | None, data_dir
) -> np.ndarray:
    """±1 int8 [1, bits] of a free-text (--text) or image-file (--image) query."""
    device, tower = next(model.parameters()).device, "text" if text is not None else "image"
    if getattr(model, tower) is None:
        raise UserError(f"the checkpoint has no {tower} tower; query with the other modality")
    model.eval()
    if image is not None:
        try:
            with Image.open(image) as im:
                pixels = image_transform(cfg.image_size, False, norm=cfg.image_norm)(
                    im.convert("RGB")
                )
        except Exception as e:  # PIL raises OSError, SyntaxError, DecompressionBombError...
            raise UserError(f"--image {image}: cannot read the image ({e})") from None
        h = model.encode_image({"image": pixels[None].to(device)})
    elif cfg.text_encoder == "bow":
        data = load_prepared(data_dir)
        cols, counts = bow_vector(text, {w: i for i, w in enumerate(data.vocab)})
        bow = torch.zeros(1, data.bow_dim())
        bow[0, cols] = torch.tensor(counts, dtype=torch.float)
        h = model.encode_text({"bow": bow.to(device)})
    else:
        enc = tokenizer([text], truncation=True, max_length=cfg.max_length, return_tensors="pt")
        h = model.encode_text({k: enc[k].to(device) for k in ("input_ids", "attention_mask")})
    return binarize(h.float()).to(torch.int8).cpu().numpy()


def query_item(index: Index, args, get_model, device) -> tuple[np.ndarray, dict]:
    """(packed code [1, B], query info) of --item: its stored code, else encoded from --data."""
    mod, row = args.item_modality, index.row(args.item)
    if mod not in index.codes:
        raise UserError(
            f"--item-modality {mod}: {index.root} holds only {index.meta['modalities']}"
        )
    if row is not None:
        it = {k: index.items[f"{k}s"][row] for k in ("caption", "image")}
        it["labels"] = index.items["labels"][row]
        return index.codes[mod][row : row + 1], {"id": args.item, **it, "modality": mod}
    data = load_prepared(args.data or index.meta["data"])
    splits = [s for s, ids in data.splits.items() if args.item in ids]
    if not splits:
        raise UserError(f"--item {args.item}: no such item in {index.root} or {data.root}")
    model, tokenizer, cfg = get_model()
    split = min(splits, key=lambda s: len(data.splits[s]))
    loaded = Loaded(Path(index.meta["checkpoint"]), {}, model, tokenizer, cfg, data, device)
    code = encode_splits(loaded, [split], ids=[args.item])[split][mod]
    it = data.items[data.rows([args.item])[0]]
    info = {"caption": it["caption"], "image": str(data.image_path(it).resolve())}
    return pack_codes(code), {"id": args.item, **info, "labels": it["labels"], "modality": mod}


def check_query_image(image: str | None) -> None:
    if image is not None and not Path(image).is_file():
        raise UserError(f"--image {image}: no such file")


def run_query(args: argparse.Namespace) -> tuple[dict, list[dict], Index]:
    """Search --index with --text, --image or --item; (query info, ranked result rows, index)."""
    if args.text is not None and not args.text.strip():
        raise UserError("--text is empty; give the words to search for")
    check_all(lambda: check_index_folder(args.index),  # cheap checks first, all problems at once
              lambda: check_query_image(args.image))  # fmt: skip
    index = load_index(args.index)
    if args.k > index.meta["n_items"]:
        raise UserError(
            f"--k {args.k} is larger than the database ({index.meta['n_items']} items "
            f"in {index.root})"
        )
    device = resolve_device(args.device)
    get_model = functools.cache(lambda: load_query_model(index, args.checkpoint, device))
    if args.checkpoint:
        get_model()  # a checkpoint given is checked even when the stored codes suffice
    if args.item is not None:
        packed, info = query_item(index, args, get_model, device)
    else:
        model, tokenizer, cfg = get_model()
        code = encode_query(model, tokenizer, cfg, args.text, args.image, index.meta["data"])
        info = {"modality": "text" if args.text is not None else "image", "labels": None}
        info |= {"caption": args.text, "image": args.image and str(Path(args.image).resolve())}
        packed = pack_codes(code)
    other = "text" if info["modality"] == "image" else "image"
    info["searched"] = other if other in index.codes else info["modality"]
    params = {"ef_search": args.ef_search, "nprobe": args.nprobe}
    params = {**index.meta["params"], **{k: v for k, v in params.items() if v is not None}}
    dist, pos = search(index.faiss_index(info["searched"], params), packed, args.k)
    rows = result_rows(index, dist[0], pos[0], info["labels"])
    shown = np.array([r["distance"] for r in rows])
    info["more_tied"] = tied_beyond(index.codes[info["searched"]], packed, shown)
    return info, rows, index


# ------------------------------------------------------------------ CLI
USAGE = """Search a trained model's hash codes by text, image or dataset item.

    python retrieve.py index --checkpoint RUN/best.pt --out INDEX_DIR     # once per model
    python retrieve.py query --index INDEX_DIR --text "two people on a beach" --html page.html
    python retrieve.py query --index INDEX_DIR --item 123 --k 10          # a dataset item

`index` encodes a split (default: the database) and stores its codes; `query` ranks them by
Hamming distance to the query's code and prints rank, id, distance and caption. A text query
searches the image codes (the text codes on a text-only model); an image query the text codes.
`python retrieve.py index --help` and `query --help` list every option."""


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(description=USAGE)
    sub = p.add_subparsers(dest="command", required=True)
    ix = sub.add_parser("index", help="encode a split and write a FAISS index folder")
    ix.add_argument("--checkpoint", required=True, help="checkpoint file (RUN/best.pt)")
    ix.add_argument("--data", help="prepared dataset folder (default: the one the run trained on)")
    ix.add_argument("--split", default="database", help="split to index")
    ix.add_argument("--out", required=True, help="index folder to write")
    ix.add_argument("--kind", default="flat", choices=KINDS, help="flat (exact), hnsw or ivf")
    ix.add_argument("--hnsw-m", type=int, default=16, help="HNSW neighbours per node")
    ix.add_argument("--ef-construction", type=int, default=40, help="HNSW build beam width")
    ix.add_argument("--nlist", type=int, default=0, help="IVF lists (0: about sqrt(items))")
    ix.add_argument("--batch-size", type=int, default=128, help="encoding batch size")
    ix.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    ix.add_argument("--overwrite", action="store_true", help="replace an index at --out")
    qp = sub.add_parser("query", help="search an index folder by text, image or item")
    qp.add_argument("--index", required=True, help="index folder written by `index`")
    what = qp.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--text",
        help="free-text query; searches the image codes (a text-only index: the text codes)",
    )
    what.add_argument("--image", help="image file query; searches the text codes")
    what.add_argument("--item", type=int, help="dataset item id as the query; marks relevance")
    qp.add_argument(
        "--item-modality",
        default="image",
        choices=MODALITIES,
        help="query with the item's image or caption",
    )
    qp.add_argument("--k", type=int, default=10, help="number of results")
    qp.add_argument("--checkpoint", help="checkpoint (default: the index's; must be the same)")
    qp.add_argument(
        "--data", help="prepared folder for an --item not in the index (default: the index's)"
    )
    qp.add_argument("--html", type=Path, help="write a results page here")
    qp.add_argument(
        "--embed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="--html: inline the images as small JPEG thumbnails, so the page can be moved",
    )
    for sp in (ix, qp):
        sp.add_argument("--ef-search", type=int, help="HNSW search beam (128; query: the index's)")
        sp.add_argument("--nprobe", type=int, help="IVF lists searched (16; query: the index's)")
        sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device")
        progress.add_flag(sp.add_argument)
    args = p.parse_args(argv)
    for flag in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "batch_size", "k", "nlist"):
        value, least = getattr(args, flag, None), 0 if flag == "nlist" else 1
        if value is not None and value < least:
            raise UserError(f"--{flag.replace('_', '-')} must be >= {least}, got {value}")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        progress.configure(args.progress)
        if args.command == "index":
            meta = run_index(args)
            print(
                f"indexed {meta['n_items']} items of {meta['split']} ({meta['bits']} bits, "
                f"{meta['kind']}, {'+'.join(meta['modalities'])}) from {meta['checkpoint']} "
                f"(epoch {meta['epoch']}) into {args.out}\n"
                f'next: python retrieve.py query --index {args.out} --text "a few words" '
                f"--html {Path(args.out).parent / 'results.html'}"
            )
            return 0
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
