"""retrieve.py: FAISS index and query round trip on a tiny generated dataset with a tiny model;
retrieve_page.py: result rows, the printed table and the HTML page on hand-made rows.

The retrieved order is checked against a brute-force Hamming ranking (stable argsort, so ties by
database position) of the codes evaluate.encode computes; every refusal is checked for its message.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import faiss
import numpy as np
import pytest
import torch
from conftest import LEARN_BITS
from retrieve_output import printed_rows

import retrieve
from cmh.evaluation.hamming_metrics import hamming_distance
from cmh.retrieval import binary_index
from cmh.retrieval import results_page as retrieve_page
from cmh.retrieval.index_folder import load_index


def brute_force(q_codes: np.ndarray, db_codes: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """(distances, positions) [Q, k]: Hamming ranking, ties by position (stable argsort)."""
    dist = hamming_distance(q_codes, db_codes)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), order


def make_checkpoint(prepared: Path, path: Path, **config) -> Path:
    """A tiny model's checkpoint (random weights: training adds nothing these tests check)."""
    from cmh.runs.checkpoints import save_checkpoint
    from data import load_prepared
    from models import ModelConfig, build_model

    data = load_prepared(prepared)
    defaults = {"bits": 16, "image_weights": "none", "image_size": 32, "text_model": "tiny"}
    cfg = ModelConfig(**{**defaults, "max_length": 24, **config}, label_names=data.label_names)
    torch.manual_seed(0)
    model, _ = build_model(cfg, captions=data.captions(data.splits["train"]))
    state = {"model": model.state_dict(), "model_config": cfg.to_dict(), "epoch": 1}
    save_checkpoint({**state, "args": {"data": str(prepared)}}, path)
    return path


@pytest.fixture(scope="module")
def run(learned_run, learn_prepared, tmp_path_factory):
    """A trained tiny model (conftest.learned_run: its codes are diverse and its rankings above
    chance, so a ranking that ignored the codes would fail) and a flat index of the database."""
    out = tmp_path_factory.mktemp("retrieve")
    ckpt = Path(shutil.copy(learned_run / "best.pt", out / "best.pt"))
    assert retrieve.main(["index", "--checkpoint", str(ckpt), "--out", str(out / "index")]) == 0
    return {"root": out, "ckpt": ckpt, "index": out / "index", "data": learn_prepared}


@pytest.fixture(scope="module")
def encoded(run):
    """The codes evaluate.py ranks: its checkpoint-to-codes path on the query and database."""
    from cmh.evaluation.from_checkpoint import encode_splits, load_for_evaluation

    loaded = load_for_evaluation(run["ckpt"], run["data"], "cpu")
    return encode_splits(loaded, ("query", "database"))


def query(run, capsys, *argv) -> tuple[int, str, str]:
    code = retrieve.main(["query", "--index", str(run["index"]), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_index_folder_holds_codes_items_and_meta(run, encoded):
    root, db = run["index"], encoded["database"]
    meta = json.loads((root / "meta.json").read_text())
    files = {"image": "image.1.faiss", "text": "text.1.faiss", "codes": "codes.1.npz"}
    assert meta["files"] == {**files, "items": "items.1.json"}
    shown = sorted(p.name for p in root.iterdir() if p.name[0] != ".")
    assert shown == sorted([*meta["files"].values(), "meta.json"])
    assert (meta["bits"], meta["kind"], meta["split"], meta["n_items"]) == (
        LEARN_BITS,
        "flat",
        "database",
        216,
    )
    assert meta["checkpoint"] == str(run["ckpt"].resolve()) and len(meta["fingerprint"]) == 64
    items = json.loads((root / "items.1.json").read_text())
    splits = json.loads((run["data"] / "splits.json").read_text())
    assert items["ids"] == splits["database"] == db["ids"].tolist()
    with np.load(root / "codes.1.npz") as z:
        for m in ("image", "text"):
            assert np.array_equal(z[m], binary_index.pack_codes(db[m]))
    assert not list(root.parent.glob(".index.tmp-*"))


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize("bits", [8, 12, 64])
def test_search_equals_brute_force_with_ties(kind, bits):
    rng = np.random.default_rng(bits)
    # few distinct codes, so that most distances are tied
    base = np.where(rng.random((7, bits)) < 0.5, -1, 1).astype(np.int8)
    db, q = base[rng.integers(0, 7, 300)], base[rng.integers(0, 7, 20)]
    db[::5, 0] *= -1
    params = {"nlist": 4, "nprobe": 4}  # every list probed: exact
    index = binary_index.build_index(binary_index.pack_codes(db), kind, params)
    for k in (1, 5, 37, 300):
        dist, pos = binary_index.search(index, binary_index.pack_codes(q), k)
        want_dist, want_pos = brute_force(q, db, k)
        assert np.array_equal(pos, want_pos), (k, pos[0], want_pos[0])
        assert np.array_equal(dist, want_dist)


def test_search_again_only_for_tied_queries():
    rng = np.random.default_rng(1)
    db = np.where(rng.random((400, 32)) < 0.5, -1, 1)
    db[::4] = db[0]  # 100 copies of one code, spread over the database
    q = np.stack([db[0], db[1]])  # the first query ties 100 ways at distance 0, the second not
    index = binary_index.build_index(binary_index.pack_codes(db), "flat")
    dist, pos = binary_index.search(index, binary_index.pack_codes(q), 60)
    want_dist, want_pos = brute_force(q, db, 60)
    assert np.array_equal(pos, want_pos) and np.array_equal(dist, want_dist)
    assert (pos[0] == np.arange(0, 240, 4)).all()


def _tie_group_database(rng) -> tuple[np.ndarray, np.ndarray]:
    """A query (all -1, 64 bits) and 400 codes: 3 at distance 1, 250 different codes all at
    distance 8 (larger than any first fetch), 147 farther; shuffled over the positions."""
    q = -np.ones((1, 64), np.int8)
    rows = []
    for n_flip, count in ((1, 3), (8, 250), (24, 147)):
        seen = set()
        while len(seen) < count:
            seen.add(tuple(sorted(rng.choice(64, n_flip, replace=False))))
        for flips in sorted(seen):
            row = q[0].copy()
            row[list(flips)] = 1
            rows.append(row)
    db = np.stack(rows)[rng.permutation(400)]
    assert len(np.unique(db, axis=0)) == 400  # different codes, one distance
    return q, db


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_a_tie_group_larger_than_the_first_fetch(kind):
    """250 different codes at one distance: whatever FAISS returns of them first, the top k holds
    the lowest positions of the group, as the brute-force ranking does. (Flat and IVF heaps keep
    the lower id on a tie themselves; HNSW returns what its walk met first, so there a search that
    stops at the first fetch when the k-th distance ties the last fetched one is wrong.)"""
    q, db = _tie_group_database(np.random.default_rng(7))
    # every list probed; a graph that reaches every node (M 64: measured, M 8 reaches 267 of
    # the 400 on this plateau of ties): each index exact, so that only the tie order is tested
    params = {"nlist": 4, "nprobe": 4, "hnsw_m": 64, "ef_construction": 400, "ef_search": 16}
    index = binary_index.build_index(binary_index.pack_codes(db), kind, params)
    for k in (5, 20, 60):
        dist, pos = binary_index.search(index, binary_index.pack_codes(q), k)
        want_dist, want_pos = brute_force(q, db, k)
        assert np.array_equal(dist, want_dist) and np.array_equal(pos, want_pos), (kind, k)


def test_hnsw_results_sorted_with_true_distances():
    rng = np.random.default_rng(0)
    db = np.where(rng.random((500, 16)) < 0.5, -1, 1)
    q = db[:10]
    index = binary_index.build_index(binary_index.pack_codes(db), "hnsw", retrieve_hnsw_params())
    dist, pos = binary_index.search(index, binary_index.pack_codes(q), 20)
    assert (pos >= 0).all()
    true = hamming_distance(q, db)
    assert np.array_equal(dist, np.take_along_axis(true, pos, axis=1))
    keys = dist.astype(np.int64) * 1000 + pos
    assert (np.diff(keys, axis=1) > 0).all()  # by distance, ties by position
    assert (dist[:, 0] == 0).all()


def retrieve_hnsw_params() -> dict:
    return {"hnsw_m": 8, "ef_construction": 40, "ef_search": 64}


@pytest.mark.compares
def test_item_query_equals_evaluate_ranking(run, encoded, capsys):
    q, db = encoded["query"], encoded["database"]
    k = 30
    # query items are not in the index: encoded one at a time, like evaluate.py's batches
    for row, mod, other in ((0, "image", "text"), (5, "text", "image")):
        item = str(q["ids"][row])
        code, out, err = query(run, capsys, "--item", item, "--item-modality", mod, "--k", str(k))
        assert code == 0, err
        dist, pos = brute_force(q[mod][row : row + 1], db[other], k)
        want = zip(db["ids"][pos[0]].tolist(), dist[0].tolist(), strict=True)
        assert printed_rows(out) == list(want)
    index = load_index(run["index"])
    got_dist, got_pos = binary_index.search(
        index.faiss_index("text", {}), binary_index.pack_codes(q["image"]), k
    )
    want_dist, want_pos = brute_force(q["image"], db["text"], k)  # all queries at once
    assert np.array_equal(got_pos, want_pos) and np.array_equal(got_dist, want_dist)


def test_item_query_marks_relevant(run, encoded, capsys):
    data_items = {
        json.loads(line)["id"]: json.loads(line)
        for line in (run["data"] / "manifest.jsonl").read_text().splitlines()
    }
    item = int(encoded["database"]["ids"][3])  # in the index: its stored code
    code, out, _ = query(run, capsys, "--item", str(item), "--k", "20")
    assert code == 0
    want = set(data_items[item]["labels"])
    for line in [x for x in out.splitlines()[2:] if not x.startswith("+")]:
        rid, rel = int(line.split()[1]), line.split()[3]
        assert rel == ("yes" if want & set(data_items[rid]["labels"]) else "no")


def test_text_and_image_queries(run, capsys):
    items = load_index(run["index"]).items
    code, out, err = query(run, capsys, "--text", items["captions"][0], "--k", "5")
    assert code == 0, err
    assert "text" in out.splitlines()[0] and len(printed_rows(out)) == 5
    # the image file of an indexed item gives that item's stored image code
    code, out, err = query(run, capsys, "--image", items["images"][2], "--k", "15")
    assert code == 0, err
    by_file = printed_rows(out)
    code, out, _ = query(run, capsys, "--item", str(items["ids"][2]), "--k", "15")
    assert printed_rows(out) == by_file


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def test_html_page_references_the_images(run, tmp_path, capsys):
    page = tmp_path / "pages" / "out.html"
    item = load_index(run["index"]).items["ids"][0]
    code, out, err = query(run, capsys, "--item", str(item), "--k", "6", "--html", str(page))
    assert code == 0, err
    parser = _Images()
    text = page.read_text(encoding="utf-8")
    parser.feed(text)
    files = [(page.parent / unquote(src)).resolve() for src in parser.srcs]
    items = load_index(run["index"]).items
    image_of = dict(zip(items["ids"], items["images"], strict=True))
    want = [image_of[item]] + [image_of[rid] for rid, _ in printed_rows(out)]
    assert [str(f) for f in files] == want and all(f.is_file() for f in files)
    assert not any(src.startswith("/") for src in parser.srcs)  # relative paths
    assert "relevant" in text and "distance" in text


def test_html_escapes_text_and_quotes_paths(tmp_path):
    image = tmp_path / "a b.jpg"
    info = {"modality": "text", "caption": "<b>x</b> & y", "image": None, "searched": "image"}
    row = {"rank": 1, "id": 5, "distance": 0, "relevant": None, "caption": "<script>"}
    row |= {"image": str(image), "labels": ["a&b"]}
    retrieve_page.write_html(
        tmp_path / "p.html", info, [row], {"split": "db", "bits": 8, "kind": "flat"}
    )
    text = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;b&gt;x" in text
    assert 'src="a%20b.jpg"' in text and "a&amp;b" in text


class _Items:
    items = {
        "ids": [4, 9, 11],
        "captions": ["a dog", "x" * 71, "sea"],
        "images": ["/d/4.jpg", "/d/9.jpg", "/d/11.jpg"],
        "labels": [[0, 2], [1], []],
        "label_names": ["dog", "sea", "sky"],
    }


def test_result_rows_and_table():
    dist, pos = np.array([1, 2, 3, 9]), np.array([2, 0, 1, -1])  # -1: an index found only 3
    rows = retrieve_page.result_rows(_Items(), dist, pos, [1, 2])
    assert [(r["rank"], r["id"], r["distance"], r["relevant"]) for r in rows] == [
        (1, 11, 1, False),
        (2, 4, 2, True),
        (3, 9, 3, True),
    ]
    assert rows[1]["labels"] == ["dog", "sky"] and rows[1]["image"] == "/d/4.jpg"
    assert retrieve_page.result_rows(_Items(), dist, pos, None)[0]["relevant"] is None
    info = {"id": 4, "modality": "text", "caption": "a dog", "labels": [0, 2], "searched": "image"}
    meta = {"split": "db", "n_items": 3, "bits": 16, "kind": "flat"}
    table = retrieve_page.format_results(info, rows, meta, _Items.items["label_names"])
    assert table.splitlines() == [
        "query: item 4 (text; dog, sky) 'a dog' -> image codes of db (3 items, 16 bits, flat)",
        "rank  id        hamming  relevant  caption",
        "   1  11              1  no        sea",
        "   2  4               2  yes       a dog",
        "   3  9               3  yes       " + "x" * 67 + "...",
    ]


def test_retrieve_page_imports_none_of_our_modules():
    import ast

    tree = ast.parse(Path(retrieve_page.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    ours = {p.stem for p in Path(retrieve_page.__file__).parent.glob("*.py")}
    assert {name.split(".")[0] for name in names} & ours == set()
    assert retrieve.write_html is retrieve_page.write_html  # retrieve re-exports the output code


def test_approximate_indexes_round_trip(run, encoded, tmp_path, capsys):
    db = encoded["database"]
    item = str(db["ids"][1])  # in the index: its stored code, no model needed
    for kind in ("hnsw", "ivf"):
        out_dir = tmp_path / kind
        argv = ["index", "--checkpoint", str(run["ckpt"]), "--out", str(out_dir), "--kind", kind]
        assert retrieve.main(argv) == 0
        assert json.loads((out_dir / "meta.json").read_text())["kind"] == kind
        assert retrieve.main(["query", "--index", str(out_dir), "--item", item, "--k", "8"]) == 0
        rows = printed_rows(capsys.readouterr().out)
        assert len(rows) == 8
        dist = hamming_distance(db["image"][1:2], db["text"])[0]
        pos = {int(i): p for p, i in enumerate(db["ids"])}
        assert [d for _, d in rows] == [int(dist[pos[i]]) for i, _ in rows]
        assert rows == sorted(rows, key=lambda r: (r[1], pos[r[0]]))


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--text", "   "], "--text is empty"),
        (["--text", "sky", "--k", "0"], "--k must be >= 1"),
        (["--text", "sky", "--k", "217"], "--k 217 is larger than the database (216 items"),
        (["--image", "/nonexistent/x.jpg"], "--image /nonexistent/x.jpg: no such file"),
        (["--item", "999999"], "--item 999999: no such item"),
    ],
)
def test_bad_queries_refused(run, capsys, argv, message):
    code, _, err = query(run, capsys, *argv)
    assert code == 2 and message in err, err


def test_a_missing_image_is_refused_before_the_model_loads(run, capsys, monkeypatch):
    def no_model(*_):
        raise AssertionError("the model was loaded")

    from cmh.retrieval.hasher import Hasher

    monkeypatch.setattr(Hasher, "load", no_model)
    code, _, err = query(run, capsys, "--image", "/nonexistent/x.jpg")
    assert code == 2 and "--image /nonexistent/x.jpg: no such file" in err


def test_tied_beyond_counts_the_unshown_items_at_the_last_distance():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, (500, 8)).astype(np.int8) * 2 - 1  # 8 bits: many ties
    packed = binary_index.pack_codes(codes)
    query_code = binary_index.pack_codes(codes[:1])
    dist = np.array([hamming_distance(codes[:1], codes[i : i + 1])[0, 0] for i in range(500)])
    for k in (1, 7, 40):
        shown = np.sort(dist)[:k]
        want = int((dist == shown[-1]).sum()) - int((shown == shown[-1]).sum())
        assert binary_index.tied_beyond(packed, query_code, shown) == want
    assert binary_index.tied_beyond(packed, query_code, np.array([], int)) == 0


def test_query_output_and_page_say_how_many_more_tie(run, encoded, capsys, tmp_path):
    db = encoded["database"]
    for row in range(6):  # stored item codes: the tie count is over the other modality's codes
        item = str(db["ids"][row])
        page = tmp_path / f"q{row}.html"
        code, out, err = query(run, capsys, "--item", item, "--k", "4", "--html", str(page))
        assert code == 0, err
        shown = [d for _, d in printed_rows(out)]
        dist = hamming_distance(db["image"][row : row + 1], db["text"])[0]
        more = int((dist == shown[-1]).sum()) - shown.count(shown[-1])
        note = f"+{more} more at distance {shown[-1]} (tied with the last one shown"
        assert (note in out) == (more > 0) and (note in page.read_text()) == (more > 0)
        assert more == 0 or out.splitlines()[-1].startswith(note)


def test_unreadable_image_refused(run, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    code, _, err = query(run, capsys, "--image", str(bad))
    assert code == 2 and f"--image {bad}: cannot read the image" in err


def perturbed(src: Path, dst: Path, bits: int | None = None) -> Path:
    """A copy of checkpoint `src` with one weight changed (or rebuilt with other `bits`)."""
    from models import ModelConfig, build_model

    state = torch.load(src, weights_only=True)
    if bits is None:
        name = next(k for k, v in state["model"].items() if v.is_floating_point())
        state["model"][name] = state["model"][name] + 1e-3
    else:
        cfg = ModelConfig.from_dict({**state["model_config"], "bits": bits})
        state["model"], state["model_config"] = (
            build_model(cfg, pretrained=False)[0].state_dict(),
            cfg.to_dict(),
        )
    torch.save(state, dst)
    return dst


def test_other_checkpoint_refused(run, tmp_path, capsys):
    other = perturbed(run["ckpt"], tmp_path / "other.pt")
    code, _, err = query(run, capsys, "--text", "sky", "--checkpoint", str(other))
    assert code == 2 and "was built with checkpoint" in err and f"{other} (sha256" in err
    assert "differs" in err
    wide = perturbed(run["ckpt"], tmp_path / "wide.pt", bits=2 * LEARN_BITS)
    code, _, err = query(run, capsys, "--text", "sky", "--checkpoint", str(wide))
    assert code == 2 and f"holds {LEARN_BITS}-bit codes" in err
    assert f"makes {2 * LEARN_BITS}-bit codes" in err


def test_bag_of_words_text_query(run, tmp_path, capsys):
    from data import load_prepared

    bow_dim = load_prepared(run["data"]).bow_dim()
    ckpt = make_checkpoint(
        run["data"], tmp_path / "bow.pt", text_encoder="bow", bow_dim=bow_dim, bow_hidden=32
    )
    index = tmp_path / "index"
    assert retrieve.main(["index", "--checkpoint", str(ckpt), "--out", str(index)]) == 0
    caption = load_index(index).items["captions"][4]
    assert retrieve.main(["query", "--index", str(index), "--text", caption, "--k", "4"]) == 0
    assert len(printed_rows(capsys.readouterr().out)) == 4


def test_changed_checkpoint_file_refused(run, tmp_path, capsys):
    ckpt = tmp_path / "copy.pt"
    shutil.copy(run["ckpt"], ckpt)
    index = tmp_path / "index"
    shutil.copytree(run["index"], index)  # as if built from the copy
    meta = json.loads((index / "meta.json").read_text())
    (index / "meta.json").write_text(json.dumps({**meta, "checkpoint": str(ckpt)}))
    assert retrieve.main(["query", "--index", str(index), "--text", "sky"]) == 0
    perturbed(ckpt, ckpt)  # training went on and overwrote the file
    assert retrieve.main(["query", "--index", str(index), "--text", "sky"]) == 2
    assert "differs" in capsys.readouterr().err


def test_index_files_for_other_bits_refused(run, tmp_path, capsys):
    index = tmp_path / "index"
    shutil.copytree(run["index"], index)
    meta = json.loads((index / "meta.json").read_text())
    (index / "meta.json").write_text(json.dumps({**meta, "bits": 2 * LEARN_BITS}))
    assert retrieve.main(["query", "--index", str(index), "--text", "sky"]) == 2
    assert f"codes (216, {LEARN_BITS // 8}) do not match meta.json bits" in capsys.readouterr().err


def test_index_output_refusals(run, tmp_path, capsys):
    argv = ["index", "--checkpoint", str(run["ckpt"]), "--out", str(run["index"])]
    assert retrieve.main(argv) == 2
    assert "already holds an index; pass --overwrite" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("mine")
    assert retrieve.main([*argv[:-1], str(tmp_path)]) == 2
    assert "holds what an index does not: notes.txt" in capsys.readouterr().err
    assert retrieve.main(["query", "--index", str(tmp_path), "--text", "sky"]) == 2
    assert "is not an index folder" in capsys.readouterr().err


def test_bench_retrieve_runs(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_retrieve.py"
    spec = importlib.util.spec_from_file_location("bench_retrieve", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--sizes", "400", "--queries", "30", "--single", "3", "--nprobe", "2", "--threads", "1"]
    threads = faiss.omp_get_max_threads()
    try:
        assert bench.main(argv) == 0
    finally:
        faiss.omp_set_num_threads(threads)  # the benchmark pins the FAISS threads
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("|        400 |")]
    assert [r[2].split()[0] for r in rows] == ["flat", "hnsw", "hnsw", "ivf", "mih", "mih", "mih"]
    assert [r[2].split()[-1] for r in rows[4:]] == ["nflip=0", "nflip=1", "nflip=2"]
    assert float(rows[0][-2]) == 1.0 and all(0.0 <= float(r[-2]) <= 1.0 for r in rows)
    assert "64-bit codes: 4096 random centres, each bit flipped with probability 0.05" in out


def test_bench_clustered_codes_lie_near_their_centres():
    """--codes clustered: each code within a few bits of a centre (the flip rate), queries too."""
    import argparse
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_retrieve.py"
    spec = importlib.util.spec_from_file_location("bench_retrieve", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(0)
    centres = np.packbits(rng.integers(0, 2, (8, 64), dtype=np.uint8), axis=1)
    args = argparse.Namespace(bits=64, flip=0.05)
    codes = bench.make_codes(2000, args, rng, centres)
    nearest = np.unpackbits(codes[:, None] ^ centres[None], axis=2).sum(2).min(1)
    assert abs(nearest.mean() - 64 * 0.05) < 0.3 and nearest.max() <= 14
