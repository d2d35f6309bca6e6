"""The prepare step for cross-modal hashing (its CLI is ``python data.py prepare``).

:func:`prepare` reads the raw IAPR TC-12 + SAIAPR TC-12 layout (or the preprocessed ``iapr_*``
lists, or with ``--mat`` a benchmark set in MATLAB files: :mod:`cmh.data.sources.mat_prepare`, or with
``--twemoji`` the Twemoji images and emojilib keywords: :mod:`cmh.data.sources.twemoji`) once, drops
unusable items, draws seeded splits (:mod:`cmh.data.splits`) and writes a prepared folder. Training
and evaluation only read that folder, through :func:`cmh.data.prepared_folder.load_prepared`.

Prepared folder (``summary.json`` is written last and marks the folder complete):
``manifest.jsonl`` one item per line, sorted by id: ``id``, ``image`` (relative to the
folder, or a row of the folder's image array: :mod:`cmh.data.caches.image_array`), ``caption``,
``labels`` (ascending label columns), ``bow`` (lists and bag-of-words .mat input),
``captions`` (.mat sets with several per item);
``labels.txt`` label names in column order; ``splits.json`` query / database / train /
val ids; ``vocab.txt`` bag-of-words vocabulary of the training captions; ``summary.json``
counts, labels per item, chance-level mAP, split sizes and the dropped items with reasons.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from cmh.data.bag_of_words import build_vocab
from cmh.data.caches import image_array
from cmh.data.image_transforms import image_decodes
from cmh.data.prepared_folder import PreparedData
from cmh.data.sources import iapr_lists, iapr_raw, mat_prepare, twemoji  # noqa: F401  (mat_prepare, twemoji register themselves)
from cmh.data.sources.registry import DataSource, flag, register_source, select_source
from cmh.data.splits import check_splits, lists_splits, make_splits
from cmh.evaluation import hamming_metrics
from cmh.utils.errors import UserError
from cmh.utils.folder_lock import writing_folder


# =========================================================================== dropping
def drop_reason(item: dict, check_images: bool) -> str | None:
    """Why an item cannot be used, or None: no annotation / caption / labels, bad image."""
    if item["caption"] is None:
        return "no annotation"
    if not item["caption"]:
        return "no caption"
    if not item["labels"]:
        return "no labels"
    if not item["image"].is_file():
        return "missing image"
    if check_images and not image_decodes(item["image"]):
        return "unreadable image"
    return None


def filter_items(
    items: list[dict], check_images: bool, strict: bool
) -> tuple[list[dict], list[dict]]:
    """(kept items, dropped [{"id", "reason"}]); with ``strict`` the first drop is a UserError."""
    kept, dropped = [], []
    for item in items:
        reason = drop_reason(item, check_images)
        if reason is None:
            kept.append(item)
            continue
        if strict:
            raise UserError(
                f"item {item['id']}: {reason} (annotation {item['src']}, image {item['image']}); "
                "without --strict such items are dropped and listed in summary.json"
            )
        dropped.append({"id": item["id"], "reason": reason})
    return kept, dropped


# =========================================================================== statistics, writing
def chance_level(query: np.ndarray, database: np.ndarray) -> float | None:
    """:func:`hamming_metrics.chance_level` (mAP at chance), or None when either side is empty."""
    if len(query) == 0 or len(database) == 0:
        return None
    return hamming_metrics.chance_level(query, database)


def summarize(prepared: PreparedData, dropped: list[dict], extra: dict) -> dict:
    """The summary.json content (see the module docstring and docs/data.md)."""
    counts = np.array([len(item["labels"]) for item in prepared.items])
    splits = prepared.splits
    chance = {
        "query_database": chance_level(
            *map(prepared.label_matrix, (splits["query"], splits["database"]))
        ),
        "val_train": chance_level(*map(prepared.label_matrix, (splits["val"], splits["train"]))),
    }
    return {
        "format_version": 1,
        **extra,
        "items": len(prepared.items),
        "labels": len(prepared.label_names),
        "labels_per_item": {
            "mean": float(counts.mean()),
            "min": int(counts.min()),
            "max": int(counts.max()),
        },
        "chance_map": chance,
        "splits": {k: len(v) for k, v in splits.items()},
        "vocab_size": len(prepared.vocab),
        "bow_dim": prepared.bow_dim(),
        "dropped_counts": dict(sorted(Counter(d["reason"] for d in dropped).items())),
        "dropped": dropped,
    }


def format_summary(summary: dict, out: Path) -> str:
    """Human-readable lines of a summary dict."""
    per, chance, sizes = summary["labels_per_item"], summary["chance_map"], summary["splits"]
    fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    dropped = ", ".join(f"{r}: {n}" for r, n in summary["dropped_counts"].items()) or "none"
    return "\n".join(
        [
            f"prepared {summary['items']} items -> {out}",
            f"labels: {summary['labels']} columns; labels per item mean {per['mean']:.2f} "
            f"(min {per['min']}, max {per['max']})",
            "splits: " + ", ".join(f"{k} {v}" for k, v in sizes.items()),
            f"chance level (mean fraction of relevant items): query->database "
            f"{fmt(chance['query_database'])}, val->train {fmt(chance['val_train'])}",
            f"vocabulary: {summary['vocab_size']} words; bag-of-words dim {summary['bow_dim']}",
            f"dropped {len(summary['dropped'])} item(s): {dropped}" + dropped_ids(summary),
        ]
    )


def dropped_ids(summary: dict, shown: int = 5) -> str:
    """ "; ids 12 (reason), 40 (reason) and 3 more (see OUT/summary.json)" or ""."""
    dropped = summary["dropped"]
    if not dropped:
        return ""
    listed = ", ".join(f"{d['id']} ({d['reason']})" for d in dropped[:shown])
    more = f" and {len(dropped) - shown} more" if len(dropped) > shown else ""
    return f"; ids {listed}{more} (all in summary.json)"


def _write_file(path: Path, text: str) -> None:
    """Write one output file (UTF-8, ``\\n`` line ends)."""
    path.write_text(text, encoding="utf-8", newline="\n")


def check_out(out: Path, overwrite: bool) -> None:
    """UserError if ``out`` is a file, or already a prepared dataset and not ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if (out / "summary.json").exists() and not overwrite:
        raise UserError(f"--out {out} already holds a prepared dataset; pass --overwrite")


def staging_dir(out: Path) -> Path:
    """``out/.tmp-prepare-PID``: where a prepare writes before renaming into ``out``."""
    return out / f".tmp-prepare-{os.getpid()}"


def write_atomic(
    out: Path, files: dict[str, str], overwrite: bool, staged: tuple[str, ...] = ()
) -> None:
    """Write ``files`` (name -> text) into ``out`` via ``out/.tmp-prepare-PID`` and os.replace.

    ``staged``: files already written into that folder (the image array), moved first.
    summary.json is moved last (and an old one removed first), so a folder holding
    summary.json is always complete. The temporary folder is removed on any failure.
    """
    check_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)
    if not staged:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(exist_ok=bool(staged))
        names = sorted(files, key=lambda n: n == "summary.json")
        for name in names:
            _write_file(tmp / name, files[name])
        (out / "summary.json").unlink(missing_ok=True)
        for name in [*staged, *names]:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _relpath(path: Path, out: Path) -> str:
    """``path`` relative to ``out`` (POSIX separators); absolute if on another drive."""
    try:
        return Path(os.path.relpath(path, out)).as_posix()
    except ValueError:
        return Path(os.path.abspath(path)).as_posix()


# =========================================================================== prepare
def _require(args, given_first: str, required: tuple[str, ...]) -> None:
    """UserError naming the flags an input cannot do without, after the first of its flags given."""
    missing = [flag(d) for d in required if args.get(d) is None]
    if missing:
        raise UserError(f"{flag(given_first)} also needs {' and '.join(missing)}")


def _label_columns(args: argparse.Namespace, mode: str, kept: list[dict], wlist: dict) -> list:
    """Label names in column order; raw items' SAIAPR ids are rewritten to column indices."""
    if mode == "raw":
        ids = sorted({label for item in kept for label in item["labels"]})
        column = {label: c for c, label in enumerate(ids)}
        for item in kept:
            item["labels"] = [column[label] for label in item["labels"]]
        return [wlist[label] for label in ids]
    if args.label_names is None:
        return [f"label_{c:03d}" for c in range(args.label_columns)]
    names = iapr_lists.read_names(args.label_names)
    if len(names) != args.label_columns:
        raise UserError(
            f"--label-names {args.label_names}: expected {args.label_columns} label names "
            f"(one per line), found {len(names)}"
        )
    return names


def _manifest_line(item: dict, out: Path) -> str:
    """One manifest.jsonl line (see the module docstring)."""
    image = item["image"]
    line = {
        "id": item["id"],
        "image": image if isinstance(image, dict) else _relpath(image, out),  # dict: array row
        "caption": item["caption"],
        "labels": item["labels"],
    }
    for key in ("captions", "bow", "name"):  # captions, name: --mat sets; name: --twemoji
        if key in item:
            line[key] = item[key]
    return json.dumps(line, ensure_ascii=False)


def _read_input(args: argparse.Namespace, mode: str) -> tuple[list[dict], dict, dict]:
    """(candidate items, SAIAPR label dictionary, the lists' splits) of the input flags."""
    if mode == "raw":
        items, wlist = iapr_raw.read_raw_layout(args.iapr_root, args.saiapr_root, args.saiapr_wlist)
        return items, wlist, {}
    for name, value in (
        ("--bow-columns", args.bow_columns),
        ("--label-columns", args.label_columns),
    ):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    items, given = iapr_lists.read_lists_layout(
        args.lists, args.images, args.annotations, args.bow_columns, args.label_columns
    )
    return items, {}, given


def prepare(args) -> dict:
    """Read the input the flags name (cmh.data.sources.registry), drop unusable items, split,
    write ``args.out``. Returns the summary dict (also written as summary.json and printed)."""
    source = select_source(args)
    if args.vocab_size < 1:
        raise UserError(f"--vocab-size must be >= 1, got {args.vocab_size}")
    check_out(args.out, args.overwrite)
    # one writer per folder; a refused start leaves no folder behind (cmh.utils.folder_lock)
    with writing_folder(args.out, "a prepare", done_when="summary.json"):
        check_out(args.out, args.overwrite)  # again, now that no other prepare can write here
        if source.prepare is not None:
            return source.prepare(args)
        return _prepare_staged(args, source)


def _prepare_items(args, mode: str) -> dict:
    """The raw layout or the lists: every item read, checked and dropped here, then split."""
    first = next(d for d in (*RAW.selects, *LISTS.selects) if args.get(d) is not None)
    _require(args, first, ("iapr_root", "saiapr_root") if mode == "raw" else
             ("lists", "images", "annotations"))  # fmt: skip
    if args.n_val is None:
        args.n_val = 1000
    defaults = {"n_query": 2000, "n_train": 10000, "bow_columns": iapr_lists.LISTS_BOW_COLUMNS,
                "label_columns": iapr_lists.LISTS_LABEL_COLUMNS}  # fmt: skip
    for name, value in defaults.items():
        if args.get(name) is None:
            setattr(args, name, value)
    candidates, wlist, given = _read_input(args, mode)
    kept, dropped = filter_items(candidates, args.check_images, args.strict)
    if not kept:
        raise UserError(f"no usable items: all {len(candidates)} were dropped ({dropped[0]})")
    label_names = _label_columns(args, mode, kept, wlist)
    ids = [item["id"] for item in kept]
    if mode == "raw":
        splits = make_splits(ids, args.n_query, args.n_train, args.n_val, args.seed)
    else:
        splits = lists_splits(given, set(ids), args.n_val, args.seed)
    check_splits(splits, set(ids), "the split of the input")
    bow_width = args.bow_columns if mode == "lists" else None
    extra = {"source": mode, "seed": args.seed}
    return _write_prepared(args, kept, dropped, label_names, splits, bow_width, extra)


def _prepare_staged(args, source) -> dict:
    """A source read whole (--mat, --twemoji): its ``plan`` reads, checks, drops and splits the
    set, its ``stage_images`` copies the images it holds into the staging folder; the rest is
    written as for every input (into ``args.out``, made and checked by :func:`prepare`)."""
    planned = source.plan(args)
    tmp = staging_dir(args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        staged = source.stage_images(planned, tmp)
        summary = _write_prepared(
            args, planned.kept, planned.dropped, planned.label_names, planned.splits,
            planned.bow_width, planned.extra, staged,
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    image_array.remove_stale(args.out, set(staged))
    return summary


def _write_prepared(
    args: argparse.Namespace,
    kept: list[dict],
    dropped: list[dict],
    label_names: list[str],
    splits: dict[str, list[int]],
    bow_width: int | None,
    extra: dict,
    staged: tuple[str, ...] = (),
) -> dict:
    """The vocabulary of the training captions, the manifest and the summary of ``kept``, all
    written atomically into ``args.out`` (``staged``: files already in the staging folder)."""
    train = set(splits["train"])
    vocab = build_vocab((it["caption"] for it in kept if it["id"] in train), args.vocab_size)
    lines = [_manifest_line(item, args.out) for item in kept]
    prepared = PreparedData(
        args.out, [json.loads(x) for x in lines], label_names, splits, vocab, bow_width
    )
    summary = {**summarize(prepared, dropped, extra), "prepared_at": str(Path(args.out).resolve())}
    files = {
        "manifest.jsonl": "".join(x + "\n" for x in lines),
        "labels.txt": "".join(n + "\n" for n in label_names),
        "splits.json": json.dumps(splits) + "\n",
        "vocab.txt": "".join(w + "\n" for w in vocab),
        "summary.json": json.dumps(summary, indent=1) + "\n",
    }
    write_atomic(args.out, files, args.overwrite, staged)
    print(format_summary(summary, args.out))
    return summary


# The inputs this module reads itself (the sets read whole register in their own modules).
RAW = register_source(DataSource(
    "raw", "the raw IAPR TC-12 + SAIAPR TC-12 archives",
    selects=("iapr_root", "saiapr_root", "saiapr_wlist", "n_query", "n_train"),
    prepare=lambda args: _prepare_items(args, "raw"), order=30,
))  # fmt: skip
LISTS = register_source(DataSource(
    "lists", "the preprocessed iapr_train / iapr_test / iapr_retrieval lists",
    selects=("lists", "images", "annotations", "label_names", "bow_columns", "label_columns"),
    prepare=lambda args: _prepare_items(args, "lists"), order=40,
))  # fmt: skip
