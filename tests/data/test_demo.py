"""Tests of the synthetic demo generator (cmh/data/sources/demo_scenes.py samples, cmh/data/sources/demo_generator.py draws and writes):
determinism, the raw IAPR / SAIAPR layout, label statistics, caption variety, the module split,
the CLI, and that ``data.py prepare`` reads the output."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data
from cmh.data.sources import demo_captions, demo_kinds, demo_scenes
from cmh.data.sources import demo_generator as demo
from cmh.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _read_labels(saiapr: Path) -> tuple[dict[int, list[tuple[int, int]]], dict[int, str]]:
    """{image id: [(segment id, label id), ...]} over all NN/labels.txt, and the wlist."""
    wlist = {}
    for line in (saiapr / "wlist.txt").read_text(encoding="ascii").splitlines():
        label_id, name = line.split("\t")
        wlist[int(label_id)] = name
    segments = defaultdict(list)
    for path in sorted(saiapr.glob("*/labels.txt")):
        for line in path.read_text(encoding="ascii").splitlines():
            fields = line.split()
            assert len(fields) == 3 and all(f.isdigit() for f in fields), (path, line)
            image_id, segment_id, label_id = map(int, fields)
            assert f"{image_id // 1000:02d}" == path.parent.name, (path, line)
            segments[image_id].append((segment_id, label_id))
    return segments, wlist


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        demo.generate_demo(tmp_path / name, n_items=60, image_size=32, seed=seed)
        runs[name] = _files(tmp_path / name)
    assert runs["a"] == runs["b"]
    assert len(runs["a"]) > 2 * 60
    differing = [k for k in runs["a"] if runs["a"][k] != runs["c"].get(k)]
    assert len(differing) > 60  # ids, images and captions all change with the seed


def test_layout_matches_the_raw_iapr_and_saiapr_formats(tmp_path):
    n, size = 240, 40
    info = demo.generate_demo(tmp_path, n_items=n, image_size=size, seed=3)
    iapr, saiapr = info["iapr_root"], info["saiapr_root"]
    assert (iapr, saiapr, info["n_items"]) == (tmp_path / "iaprtc12", tmp_path / "saiapr_tc-12", n)
    images = sorted(iapr.glob("images/*/*.jpg"), key=lambda p: int(p.stem))
    ids = [int(p.stem) for p in images]
    assert len(ids) == n and ids[0] == 25 and len(set(ids)) == n
    assert max(np.diff(ids)) > 1 and len({i // 1000 for i in ids}) >= 2  # gaps, several NN
    segments, wlist = _read_labels(saiapr)
    assert sorted(segments) == ids
    assert 30 <= len(wlist) <= 45 and set(info["label_names"]) == set(wlist.values())
    used = {label for segs in segments.values() for _, label in segs}
    assert used <= set(wlist) and len(set(wlist) - used) >= 2  # some concepts never occur
    scenes = {s.item_id: s for s in demo.sample_scenes(n, seed=3)}
    for item_id, image in zip(ids, images, strict=True):
        nn = f"{item_id // 1000:02d}"
        assert image == iapr / "images" / nn / f"{item_id}.jpg"
        with Image.open(image) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (size, size))
        text = (iapr / "annotations_complete_eng" / nn / f"{item_id}.eng").read_bytes()
        text = text.decode("cp1252")
        lines = text.split("\n")
        assert lines[:2] == ["<DOC>", f"<DOCNO>annotations/{nn}/{item_id}.eng</DOCNO>"]
        assert f"\n<IMAGE>images/{nn}/{item_id}.jpg</IMAGE>\n" in text
        assert text.endswith(f"<THUMBNAIL>thumbnails/{nn}/{item_id}.jpg</THUMBNAIL>\n</DOC>")
        caption = re.search(r"<DESCRIPTION>(.*?)</DESCRIPTION>", text, re.S).group(1)
        assert " ".join(caption.split()) == scenes[item_id].caption != ""
        segs = sorted(segments[item_id])
        assert [s for s, _ in segs] == list(range(1, len(segs) + 1))
        assert [wlist[label] for _, label in segs] == list(scenes[item_id].labels)


def test_descriptions_carry_the_quirks_of_the_real_data():
    descriptions = [s.description for s in demo_scenes.sample_scenes(800, seed=0)]
    for d in descriptions:
        d.encode("cp1252")  # raises if not cp1252
        assert "<" not in d and ">" not in d
    quirks = {
        "two lines": sum("\n" in d.strip() for d in descriptions),
        "double space": sum("  " in d for d in descriptions),
        "trailing space or line break": sum(d != d.rstrip() for d in descriptions),
        "no final ';'": sum(not d.rstrip().endswith(";") for d in descriptions),
        "Latin-1 letter": sum(any(ord(c) > 127 for c in d) for d in descriptions),
    }
    for name, count in quirks.items():
        assert 0.005 * len(descriptions) <= count <= 0.15 * len(descriptions), (name, count)


def test_default_configuration_has_the_requested_label_statistics():
    scenes = demo_scenes.sample_scenes(1500, seed=0)  # the labels of generate_demo's defaults
    stats = demo.label_stats([set(s.labels) for s in scenes])
    assert 0.2 <= stats["chance_map"] <= 0.5, stats
    assert stats["mean_labels"] >= 2.5, stats
    for group in (demo_kinds.SKIES[:-1], ("grass", "street", "ocean", "snow", "ground")):
        counts = [sum(label in s.labels for s in scenes) for label in group]
        assert all(0.05 * len(scenes) < c < 0.4 * len(scenes) for c in counts), (group, counts)
    assert sum(not set(s.labels) & set(demo_kinds.SKIES) for s in scenes) > 0.2 * len(scenes)
    assert max(len(s.labels) - len(set(s.labels)) for s in scenes) > 0  # repeated segments


def test_label_stats_matches_hand_computed_and_bruteforce_values():
    stats = demo.label_stats([{"a"}, ["a", "b"], {"c"}, set()])
    assert stats["n_items"] == 4 and stats["n_labels"] == 3
    assert stats["mean_labels"] == pytest.approx(1.0)
    assert stats["chance_map"] == pytest.approx((1 / 3 + 1 / 3 + 0 + 0) / 4)
    rng = np.random.default_rng(0)
    sets = [set(np.flatnonzero(rng.random(40) < 0.03).tolist()) for _ in range(2100)]
    y = np.zeros((len(sets), 40))
    for i, s in enumerate(sets):
        y[i, list(s)] = 1
    share = (y @ y.T) > 0
    np.fill_diagonal(share, False)
    expected = share.sum(1).mean() / (len(sets) - 1)
    assert demo.label_stats(sets)["chance_map"] == pytest.approx(expected)
    with pytest.raises(UserError, match="at least 2 items"):
        demo.label_stats([{"a"}])


def test_captions_vary_and_mention_most_labels():
    scenes = demo_scenes.sample_scenes(1500, seed=0)
    by_labels = defaultdict(list)
    for s in scenes:
        by_labels[frozenset(s.labels)].append(s.caption)
    pairs = [p for caps in by_labels.values() for p in itertools.combinations(caps, 2)]
    assert len(pairs) > 100
    assert sum(a != b for a, b in pairs) / len(pairs) > 0.9
    mentioned, total = 0, 0
    for kind in demo_kinds.KINDS.values():
        words = [w for n in kind.nouns for w in (n, demo_captions._plural(n))]
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b")
        hits = [bool(pattern.search(s.caption)) for s in scenes if kind.label in s.labels]
        assert np.mean(hits) > 0.75, kind.label
        mentioned, total = mentioned + sum(hits), total + len(hits)
    assert mentioned < total  # some labels go unmentioned, as in the real captions
    assert sum(any(d in s.caption for d in demo_captions.DETAILS) for s in scenes) > 0.05 * len(
        scenes
    )


def test_sampling_module_draws_nothing_and_demo_reexports_its_api():
    code = (
        "import sys, cmh.data.sources.demo_scenes; "
        "print(sorted({'cmh.data.sources.demo_generator', 'data', 'PIL'} & set(sys.modules)))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr
    assert demo.sample_scenes is demo_scenes.sample_scenes and demo.Scene is demo_kinds.Scene
    for name in ("generate_demo", "render_scene", "eng_text", "label_stats", "main", "parse_args"):
        assert callable(getattr(demo, name)), name


def test_every_kind_has_shapes_with_known_primitives_and_paints():
    assert list(demo.SHAPES) == list(demo_kinds.KINDS)
    box = {"rect": 0, "ell": 0, "ring": 1, "pie": 2}
    for kind, shapes in demo.SHAPES.items():
        assert shapes, kind
        for prim, geo, paint, *extra in shapes + demo.HOUSE_WINDOWS:
            assert paint in ("c", "c2") or (len(paint) == 3 and max(paint) <= 255), (kind, paint)
            if prim in box:
                assert len(geo) == 4 and len(extra) == box[prim], (kind, prim)
            else:
                assert prim in ("poly", "line") and len(extra) == (prim == "line"), (kind, prim)
                assert all(len(point) == 2 for point in geo), (kind, prim)


def test_main_prints_stats_reruns_in_place_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--n-items", "300", "--image-size", "24"]) == 0
    assert "chance-level mAP" in capsys.readouterr().out
    assert len({p.parent.name for p in out.glob("iaprtc12/images/*/*.jpg")}) >= 2
    assert demo.main(["--out", str(out), "--n-items", "20", "--image-size", "24"]) == 0
    assert len(list(out.glob("iaprtc12/images/*/*.jpg"))) == 20  # stale folders removed
    assert [p.parent.name for p in out.glob("saiapr_tc-12/*/labels.txt")] == ["00"]
    with pytest.raises(UserError, match="--n-items"):
        demo.main(["--out", str(tmp_path / "x"), "--n-items", "0"])
    with pytest.raises(UserError, match="--image-size"):
        demo.main(["--out", str(tmp_path / "x"), "--image-size", "8"])
    foreign = tmp_path / "foreign"
    (foreign / "iaprtc12").mkdir(parents=True)
    (foreign / "iaprtc12" / "keep.txt").write_text("not ours")
    with pytest.raises(UserError, match="not written by the demo generator"):
        demo.generate_demo(foreign, n_items=5)
    assert (foreign / "iaprtc12" / "keep.txt").exists()
    run = subprocess.run(
        [sys.executable, "-m", "cmh.data.sources.demo_generator", "--out", str(tmp_path / "y"), "--seed", "-1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "--seed" in run.stderr


def test_data_prepare_reads_the_generated_layout(tmp_path):
    n = 80
    info = demo.generate_demo(tmp_path / "raw", n_items=n, image_size=32, seed=5)
    out = tmp_path / "prepared"
    argv = ["prepare", "--iapr-root", str(info["iapr_root"]), "--saiapr-root",
            str(info["saiapr_root"]), "--out", str(out), "--n-query", "8", "--n-train", "40",
            "--n-val", "8", "--seed", "0"]  # fmt: skip
    assert data.main(argv) == 0
    names = (out / "labels.txt").read_text(encoding="utf-8").splitlines()
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text("utf-8").splitlines()]
    scenes = {s.item_id: s for s in demo.sample_scenes(n, seed=5)}
    assert sorted(item["id"] for item in manifest) == sorted(scenes)
    for item in manifest:
        scene = scenes[item["id"]]
        assert item["caption"] == scene.caption
        assert {names[c] for c in item["labels"]} == set(scene.labels)
        assert (out / item["image"]).resolve().is_file()
