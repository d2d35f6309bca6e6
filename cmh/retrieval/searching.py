"""Queries of an index folder by text, image or item: what `retrieve.py query` and the search
page (`retrieve.py serve`) both run.

A text query searches the image codes (a text-only index: the text codes); an image query the
text codes (an image-only index: the image codes); an item query its own code (its image's,
unless ``modality`` says otherwise or it has only a caption) against the other modality. The
model is the checkpoint the index was built with, or one given that makes the same codes: a
checkpoint whose code length or fingerprint differs is refused.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from cmh.retrieval.binary_index import pack_codes, tied_beyond
from cmh.retrieval.hasher import Hasher
from cmh.retrieval.index_folder import Index
from cmh.retrieval.results_page import result_rows
from cmh.utils.errors import UserError


def check_model(index: Index, path: str | Path, state: dict, found: str) -> None:
    """UserError unless the checkpoint ``path`` (its ``state``, fingerprint ``found``) makes the
    codes of ``index``."""
    bits, meta = state["model_config"].get("bits"), index.meta
    if bits != meta["bits"]:
        raise UserError(
            f"index {index.root} holds {meta['bits']}-bit codes; checkpoint {path} "
            f"makes {bits}-bit codes: build an index with it or use its checkpoint"
        )
    if found != meta["fingerprint"]:
        raise UserError(
            f"index {index.root} was built with checkpoint {meta['checkpoint']} (sha256 "
            f"{meta['fingerprint'][:16]}); checkpoint {path} (sha256 {found[:16]}) differs: "
            "rebuild the index with `retrieve.py index --checkpoint ...`"
        )


class Searcher:
    """An index folder and, loaded on first need, the model that made its codes."""

    def __init__(self, index: Index, checkpoint: str | None = None, device: str = "auto"):
        self.index, self.device = index, device
        self.checkpoint = checkpoint or index.meta["checkpoint"]
        if checkpoint is None and not Path(self.checkpoint).is_file():
            raise UserError(
                f"index {index.root} was built with checkpoint {self.checkpoint}, which is gone; "
                "pass --checkpoint (the same model) or rebuild the index"
            )
        self._faiss: dict = {}
        self.clip_k = False  # True (the page): a k larger than the codes searched shows them all

    @functools.cached_property
    def hasher(self) -> Hasher:
        hasher = Hasher.load(self.checkpoint, self.device, data=self.index.meta.get("data"))
        check_model(self.index, self.checkpoint, hasher.state, hasher.fingerprint)
        return hasher

    def target(self, modality: str) -> str:
        """The modality a query of ``modality`` searches: the other one when the index has it."""
        other = "text" if modality == "image" else "image"
        return other if other in self.index.codes else modality

    def by_text(self, text: str, k: int, params: dict | None = None) -> tuple[dict, list[dict]]:
        if not text.strip():
            raise UserError("the text query is empty; give the words to search for")
        info = {"modality": "text", "labels": None, "caption": text, "image": None}
        return info, self.rank(info, self.hasher.encode_texts([text]), k, params)

    def by_image(self, image, k: int, params: dict | None = None, name: str | None = None):
        """``image``: a file path, PIL image or uint8 array (``name`` in messages)."""
        pixels = self.hasher.preprocess_image(image, name)[None]
        shown = str(Path(image).resolve()) if isinstance(image, str | Path) else None
        info = {"modality": "image", "labels": None, "caption": None, "image": shown}
        return info, self.rank(info, self.hasher.encode_pixels(pixels), k, params)

    def by_item(self, item_id, k: int, modality: str | None = None, params: dict | None = None,
                data: str | None = None) -> tuple[dict, list[dict]]:  # fmt: skip
        """An item of the index (its stored code) or, for a prepared split's index, any item of
        the prepared folder (encoded). ``modality``: image or text (default: the image's code
        when it has one)."""
        index, row = self.index, self.index.row(item_id)
        if modality is not None and modality not in index.codes:
            raise UserError(f"--item-modality {modality}: {index.root} holds only "
                            f"{index.meta['modalities']}")  # fmt: skip
        if row is None:
            return self._outside_item(item_id, k, modality or "image", params, data)
        for m in [modality] if modality else ["image", "text"]:
            code = index.code_of(row, m)
            if code is not None:
                break
        else:
            raise UserError(f"--item {item_id} has no {modality} code in {index.root}")
        fields = {"id": "ids", "caption": "captions", "image": "images", "labels": "labels"}
        info = {key: index.items[name][row] for key, name in fields.items()} | {"modality": m}
        return info, self.rank(info, code, k, params)

    def _outside_item(self, item_id, k, modality, params, data):
        from cmh.data.prepared_folder import load_prepared
        from cmh.evaluation.from_checkpoint import Loaded, encode_splits

        if "data" not in self.index.meta:
            raise UserError(f"--item {item_id}: no such item in {self.index.root}")
        data = load_prepared(data or self.index.meta["data"])
        number = int(item_id) if str(item_id).lstrip("-").isdigit() else None
        splits = [s for s, ids in data.splits.items() if number in ids]
        if not splits:
            raise UserError(f"--item {item_id}: no such item in {self.index.root} or {data.root}")
        h = self.hasher
        loaded = Loaded(h.checkpoint, {}, h.model, h.tokenizer, h.cfg, data, h.device)
        split = min(splits, key=lambda s: len(data.splits[s]))
        code = encode_splits(loaded, [split], ids=[number])[split][modality]
        it = data.items[data.rows([number])[0]]
        info = {"id": number, "caption": it["caption"], "image": str(data.image_path(it).resolve())}
        info |= {"labels": it["labels"], "modality": modality}
        return info, self.rank(info, pack_codes(code), k, params)

    def rank(self, info: dict, packed: np.ndarray, k: int, params: dict | None) -> list[dict]:
        """Result rows of the packed query code [1, B]; fills info["searched"] / ["more_tied"]."""
        searched = info["searched"] = self.target(info["modality"])
        n = len(self.index.rows[searched])
        if k > n and self.clip_k:
            k = n
        if k > n:
            raise UserError(f"--k {k} is larger than the database ({n} items in {self.index.root})")
        key = (searched, tuple(sorted((params or {}).items())))
        if key not in self._faiss:  # read once per setting: the page searches it many times
            self._faiss[key] = self.index.faiss_index(searched, params)
        dist, rows = self.index.search(searched, packed, k, faiss_index=self._faiss[key])
        found = result_rows(self.index, dist[0], rows[0], info["labels"])
        shown = np.array([r["distance"] for r in found])
        info["more_tied"] = tied_beyond(self.index.codes[searched], packed, shown)
        return found
