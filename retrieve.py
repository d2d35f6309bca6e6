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
import hashlib
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch

from errors import UserError
from retrieve_page import format_results, result_rows, write_html

MODALITIES = ("image", "text")
KINDS = ("flat", "hnsw", "ivf")
FORMAT_VERSION = 1
MODEL_SUMMARY = ("bits", "image_encoder", "text_encoder", "text_model", "image_size", "max_length")


# ------------------------------------------------------------------ codes, indexes, search
def pack_codes(codes: np.ndarray) -> np.ndarray:
    """±1 codes [N, bits] -> uint8 [N, ceil(bits/8)]: bit set for +1, zero padded (FAISS layout).
    Padding bits are 0 in every code, so Hamming distances are unchanged."""
    return np.ascontiguousarray(np.packbits(np.asarray(codes) > 0, axis=1))


def auto_nlist(n: int) -> int:
    """IVF lists for n items: about sqrt(n), with >= 39 training points per list."""
    return max(1, min(round(math.sqrt(n)), n // 39))


def build_index(packed: np.ndarray, kind: str = "flat", params: dict | None = None):
    """A FAISS binary index over packed codes uint8 [N, B] (d = 8B), items at positions 0..N-1.

    params: hnsw_m, ef_construction, ef_search (hnsw); nlist (0 = auto_nlist), nprobe (ivf)."""
    p, d = dict(params or {}), 8 * packed.shape[1]
    if kind == "flat":
        index = faiss.IndexBinaryFlat(d)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(d, p["hnsw_m"])
        index.hnsw.efConstruction = p["ef_construction"]
    elif kind == "ivf":
        nlist = p["nlist"] or auto_nlist(len(packed))
        if not 1 <= nlist <= len(packed):
            raise UserError(f"--nlist must be in 1..{len(packed)} (the items), got {nlist}")
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist)
        index.cp.max_points_per_centroid = 64  # k-means on <= 64 * nlist sampled codes
        index.train(packed)
    else:
        raise UserError(f"--kind must be one of {KINDS}, got {kind!r}")
    index.add(packed)
    set_search_params(index, p)
    return index


def set_search_params(index, params: dict) -> None:
    """efSearch (HNSW) and nprobe (IVF, at most nlist) from params where given."""
    if hasattr(index, "hnsw") and params.get("ef_search"):
        index.hnsw.efSearch = params["ef_search"]
    if hasattr(index, "nprobe") and params.get("nprobe"):
        index.nprobe = min(params["nprobe"], index.nlist)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k by Hamming distance, ties by database position (see the module docstring).

    queries: packed uint8 [Q, B]. Returns (distances int32 [Q, k] in 0..d, positions int64 [Q, k]);
    where an approximate index finds fewer than k items, position -1 and distance d + 1 pad the row.
    Only the queries whose k'-th distance still equals their k-th are searched again.
    """
    n, d = index.ntotal, index.d
    out_dist, out_pos = np.full((len(queries), k), d + 1, np.int32), np.full((len(queries), k), -1)
    todo, kk = np.arange(len(queries)), min(n, max(2 * k, k + 32))
    ef = index.hnsw.efSearch if hasattr(index, "hnsw") else 0
    try:
        while todo.size:
            if ef:
                index.hnsw.efSearch = max(ef, kk)  # HNSW returns at most efSearch items
            dist, pos = index.search(queries[todo], kk)
            dist = np.where(pos < 0, d + 1, dist)
            done = (kk == n) | (pos[:, -1] < 0) | (dist[:, -1] > dist[:, k - 1])
            pos = np.where(pos < 0, n, pos)[done]
            order = np.lexsort((pos, dist[done]))[:, :k]
            out_dist[todo[done]] = np.take_along_axis(dist[done], order, axis=1)
            out_pos[todo[done]] = np.take_along_axis(pos, order, axis=1)
            todo, kk = todo[~done], min(n, 2 * kk)
    finally:
        if ef:
            index.hnsw.efSearch = ef
    return out_dist, np.where(out_pos == n, -1, out_pos)


def fingerprint(state: dict) -> str:
    """sha256 (hex) of a checkpoint's model config (JSON) and model tensors (name, dtype, shape,
    bytes): it changes when anything that makes the codes changes, not with the optimizer state."""
    h = hashlib.sha256(json.dumps(state["model_config"], sort_keys=True).encode())
    for name in sorted(state["model"]):
        t = state["model"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ index
def encode_items(model, tokenizer, cfg, data, split: str, ids=None, batch_size=128, workers=0):
    """evaluate.encode over a split (or its items `ids`): {modality: ±1 int8 [N, bits], "labels",
    "ids"}, in split order."""
    from torch.utils.data import Subset

    from data import HashingDataset, make_loader
    from evaluate import encode, pad_id

    bow, images = cfg.text_encoder == "bow", model.image is not None
    ds = HashingDataset(data, split, tokenizer, cfg.max_length, cfg.image_size, False, bow, images)
    subset = ds if ids is None else Subset(ds, [ds.ids.index(i) for i in ids])
    loader = make_loader(
        subset, batch_size, False, 0, num_workers=workers, pad_id=pad_id(tokenizer)
    )
    return encode(model, loader, next(model.parameters()).device, desc=f"encode {split}")


def run_index(args: argparse.Namespace) -> dict:
    """Encode --split of --data with --checkpoint and write the index folder --out; its meta."""
    from checkpoint import load_checkpoint
    from data import load_prepared
    from evaluate import check_labels_match, load_model, resolve_device

    check_out(Path(args.out), args.overwrite)
    state = load_checkpoint(args.checkpoint)
    data_dir = args.data or state.get("args", {}).get("data")
    if not data_dir:
        raise UserError("the checkpoint does not say which data it was trained on; pass --data DIR")
    data = load_prepared(data_dir)
    model, tokenizer, cfg = load_model(state, resolve_device(args.device))
    check_labels_match(cfg.label_names, data, data_dir)
    encoded = encode_items(
        model, tokenizer, cfg, data, args.split, None, args.batch_size, args.num_workers
    )
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
        "data": str(Path(data_dir).resolve()),
        "n_items": len(encoded["ids"]),
        "modalities": [m for m in MODALITIES if m in encoded],
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "fingerprint": fingerprint(state),
        "epoch": state.get("epoch"),
        "model": summary,
        "faiss": faiss.__version__,
    }
    write_index_dir(Path(args.out), encoded, data, meta, args.overwrite)
    return meta


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that holds anything but an index, or an index without --overwrite."""
    if out.exists() and (out.is_file() or any(out.iterdir())):
        if not (out / "meta.json").is_file():
            raise UserError(f"--out {out} holds files that are not an index; choose another")
        if not overwrite:
            raise UserError(f"--out {out} already holds an index; pass --overwrite to replace it")


def write_index_dir(out: Path, encoded: dict, data, meta: dict, overwrite: bool) -> None:
    """Build and write the faiss indexes, codes, items and meta to a temporary folder, then rename
    it to `out` (an existing index there is replaced only with `overwrite`)."""
    check_out(out, overwrite)
    tmp, old = (out.parent / f".{out.name}.{tag}-{os.getpid()}" for tag in ("tmp", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        packed = {m: pack_codes(encoded[m]) for m in meta["modalities"]}
        for m, codes in packed.items():
            index = build_index(codes, meta["kind"], meta["params"])
            faiss.write_index_binary(index, str(tmp / f"{m}.faiss"))
        np.savez(tmp / "codes.npz", **packed)
        items = [data.items[row] for row in data.rows([int(i) for i in encoded["ids"]])]
        fields = {"ids": "id", "captions": "caption", "labels": "labels"}
        table = {key: [it[field] for it in items] for key, field in fields.items()}
        table["images"] = [str(data.image_path(it).resolve()) for it in items]
        table["label_names"] = list(data.label_names)
        (tmp / "items.json").write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ query
@dataclass
class Index:
    """An index folder in memory: meta.json, items.json, packed codes per modality."""

    root: Path
    meta: dict
    items: dict
    codes: dict[str, np.ndarray]  # modality -> uint8 [N, ceil(bits/8)]

    def faiss_index(self, modality: str, params: dict):
        path = self.root / f"{modality}.faiss"
        index = faiss.read_index_binary(str(path))
        if index.d != 8 * self.codes[modality].shape[1] or index.ntotal != self.meta["n_items"]:
            raise UserError(
                f"{path} holds {index.ntotal} codes of {index.d} bits; meta.json says "
                f"{self.meta['n_items']} of {self.meta['bits']} bits: rebuild the index"
            )
        set_search_params(index, params)
        return index

    def row(self, item_id: int) -> int | None:
        return self.items["ids"].index(item_id) if item_id in self.items["ids"] else None


def load_index(root: str | Path) -> Index:
    """Read an index folder written by `retrieve.py index`; UserError if it is not one."""
    root = Path(root)
    if not (root / "meta.json").is_file():
        raise UserError(f"--index {root} is not an index folder (no meta.json); build one first")
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{root}/meta.json: format_version {meta.get('format_version')} != 1")
    items = json.loads((root / "items.json").read_text(encoding="utf-8"))
    with np.load(root / "codes.npz") as z:
        codes = {m: z[m] for m in meta["modalities"]}
    for m, c in codes.items():
        if c.shape != (meta["n_items"], (meta["bits"] + 7) // 8):
            raise UserError(f"{root}/codes.npz: {m} codes {c.shape} do not match meta.json bits")
    return Index(root, meta, items, codes)


def load_query_model(index: Index, checkpoint: str | None, device: torch.device):
    """(model, tokenizer, cfg) from --checkpoint or the index's; refused if it differs."""
    from checkpoint import load_checkpoint
    from evaluate import load_model

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
    from PIL import Image

    from data import image_transform, load_prepared
    from models import binarize

    device, tower = next(model.parameters()).device, "text" if text is not None else "image"
    if getattr(model, tower) is None:
        raise UserError(f"the checkpoint has no {tower} tower; query with the other modality")
    model.eval()
    if image is not None:
        try:
            with Image.open(image) as im:
                pixels = image_transform(cfg.image_size, train=False)(im.convert("RGB"))
        except Exception as e:  # PIL raises OSError, SyntaxError, DecompressionBombError...
            raise UserError(f"--image {image}: cannot read the image ({e})") from None
        h = model.encode_image({"image": pixels[None].to(device)})
    elif cfg.text_encoder == "bow":
        from formats import bow_vector

        data = load_prepared(data_dir)
        cols, counts = bow_vector(text, {w: i for i, w in enumerate(data.vocab)})
        bow = torch.zeros(1, data.bow_dim())
        bow[0, cols] = torch.tensor(counts, dtype=torch.float)
        h = model.encode_text({"bow": bow.to(device)})
    else:
        enc = tokenizer([text], truncation=True, max_length=cfg.max_length, return_tensors="pt")
        h = model.encode_text({k: enc[k].to(device) for k in ("input_ids", "attention_mask")})
    return binarize(h.float()).to(torch.int8).cpu().numpy()


def query_item(index: Index, args, get_model) -> tuple[np.ndarray, dict]:
    """(packed code [1, B], query info) of --item: its stored code, else encoded from --data."""
    from data import load_prepared

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
    code = encode_items(model, tokenizer, cfg, data, split, ids=[args.item])[mod]
    it = data.items[data.rows([args.item])[0]]
    info = {"caption": it["caption"], "image": str(data.image_path(it).resolve())}
    return pack_codes(code), {"id": args.item, **info, "labels": it["labels"], "modality": mod}


def run_query(args: argparse.Namespace) -> tuple[dict, list[dict], Index]:
    """Search --index with --text, --image or --item; (query info, ranked result rows, index)."""
    from evaluate import resolve_device

    if args.text is not None and not args.text.strip():
        raise UserError("--text is empty; give the words to search for")
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
        packed, info = query_item(index, args, get_model)
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
    return info, result_rows(index, dist[0], pos[0], info["labels"]), index


# ------------------------------------------------------------------ CLI
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
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
    what.add_argument("--text", help="free-text query (searches the image codes)")
    what.add_argument("--image", help="image file query (searches the text codes)")
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
    for sp in (ix, qp):
        sp.add_argument("--ef-search", type=int, help="HNSW search beam (128; query: the index's)")
        sp.add_argument("--nprobe", type=int, help="IVF lists searched (16; query: the index's)")
        sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device")
    args = p.parse_args(argv)
    for flag in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "batch_size", "k", "nlist"):
        value, least = getattr(args, flag, None), 0 if flag == "nlist" else 1
        if value is not None and value < least:
            raise UserError(f"--{flag.replace('_', '-')} must be >= {least}, got {value}")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        if args.command == "index":
            meta = run_index(args)
            print(
                f"indexed {meta['n_items']} items of {meta['split']} ({meta['bits']} bits, "
                f"{meta['kind']}, {'+'.join(meta['modalities'])}) into {args.out}"
            )
            return 0
        info, rows, index = run_query(args)
        print(format_results(info, rows, index.meta, index.items["label_names"]))
        if args.html:
            write_html(args.html, info, rows, index.meta)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
