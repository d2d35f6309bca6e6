"""A small synthetic dataset in the raw IAPR TC-12 / SAIAPR TC-12 layout, for offline CPU runs.

``python -m cmh.data.sources.demo_generator --out DIR`` (or ``generate_demo(DIR)``; ``python data.py demo``
also prepares it) writes, with NN = ID // 1000 as 2 digits:

- ``DIR/iaprtc12/images/NN/ID.jpg``: RGB JPEG, ``image_size`` x ``image_size``;
- ``DIR/iaprtc12/annotations_complete_eng/NN/ID.eng``: cp1252 annotation in the real layout;
- ``DIR/saiapr_tc-12/NN/labels.txt``: ``image_id segment_id label_id``, one line per segment;
- ``DIR/saiapr_tc-12/wlist.txt``: ``label_id<TAB>label_name`` (some concepts never occur);
- ``DIR/demo_info.json``: the generation parameters (marks DIR as a demo folder).

Scenes, labels and captions are sampled first with one ``np.random.default_rng(seed)``
(:func:`cmh.data.sources.demo_scenes.sample_scenes`, no drawing); this module draws each kind's shapes
(:data:`SHAPES`), renders a scene as a pure function of the scene and (seed, id), and writes
the files. The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cmh.data.sources.demo_kinds import (
    BLACK,
    KINDS,
    LABEL_IDS,
    LAYOUTS,
    RGB,
    WHITE,
    WLIST,
    Obj,
    Scene,
    jitter,
)
from cmh.data.sources.demo_scenes import sample_scenes
from cmh.utils.cli import Parser
from cmh.utils.errors import UserError

__all__ = [
    "SHAPES",
    "Scene",
    "eng_text",
    "generate_demo",
    "label_stats",
    "main",
    "parse_args",
    "render_scene",
    "sample_scenes",
]

GLASS, DARK, TRUNK = (165, 205, 235), (60, 45, 35), (105, 65, 30)
SKIN, GREEN, GREY = (230, 185, 150), (45, 140, 55), (110, 110, 115)


# ------------------------------------------------------------------------------- shapes
# A shape is (primitive, geometry, paint, *extra) in the object's unit box (u right, v down,
# 0..1): "rect" / "ell" / "ring" / "pie" take a box (u0, v0, u1, v1), "poly" / "line" points;
# "ring" and "line" add a width (fraction of the height), "pie" start and end angles.
# paint is "c" (the object's colour), "c2" (its second colour) or a fixed RGB.
def _rect(u0: float, v0: float, u1: float, v1: float, paint: str | RGB = "c") -> tuple:
    return ("rect", (u0, v0, u1, v1), paint)


def _ell(u0: float, v0: float, u1: float, v1: float, paint: str | RGB = "c") -> tuple:
    return ("ell", (u0, v0, u1, v1), paint)


def _poly(*points: tuple[float, float], paint: str | RGB = "c") -> tuple:
    return ("poly", points, paint)


def _line(*points: tuple[float, float], w: float = 0.05, paint: str | RGB = "c") -> tuple:
    return ("line", points, paint, w)


def _person(u0: float, u1: float) -> tuple:
    """Stick-figure shapes squeezed into the horizontal slice [u0, u1] of the unit box."""

    def u(x: float) -> float:
        return u0 + x * (u1 - u0)

    return (
        _ell(u(0.3), 0, u(0.7), 0.2, SKIN),
        _rect(u(0.28), 0.2, u(0.72), 0.6),
        _line((u(0.05), 0.5), (u(0.5), 0.27), (u(0.95), 0.5), w=0.07),
        _line((u(0.2), 1), (u(0.5), 0.58), (u(0.8), 1), w=0.09, paint=DARK),
    )


# fmt: off
WHEELS = (_ell(0.08, 0.62, 0.34, 1, BLACK), _ell(0.66, 0.62, 0.92, 1, BLACK))
RAYS = tuple(_line((0.5, 0.5), (0.5 + 0.5 * math.cos(a * math.pi / 4),
                                0.5 + 0.5 * math.sin(a * math.pi / 4))) for a in range(8))
SHAPES = {
    "car": (_rect(0, 0.35, 1, 0.82),
        _poly((0.18, 0.36), (0.3, 0.04), (0.72, 0.04), (0.84, 0.36)),
        _rect(0.32, 0.1, 0.7, 0.33, GLASS), *WHEELS),
    "bus": (_rect(0, 0.04, 1, 0.84), *(_rect(0.06 + 0.18 * i, 0.14, 0.2 + 0.18 * i, 0.42, GLASS)
        for i in range(5)), _rect(0, 0.55, 1, 0.62, "c2"), *WHEELS),
    "bicycle": (("ring", (0, 0.5, 0.4, 1), BLACK, 0.08), ("ring", (0.6, 0.5, 1, 1), BLACK, 0.08),
        _line((0.2, 0.75), (0.42, 0.4), (0.8, 0.75), (0.72, 0.3), (0.85, 0.2), w=0.08),
        _line((0.2, 0.75), (0.55, 0.75), (0.42, 0.4), (0.72, 0.4), w=0.08)),
    "boat": (_line((0.5, 0.02), (0.5, 0.7), w=0.04, paint=BLACK),
        _poly((0.53, 0.04), (0.53, 0.66), (0.92, 0.66), paint=WHITE),
        _poly((0, 0.68), (1, 0.68), (0.84, 1), (0.16, 1))),
    "house": (_rect(0.1, 0.45, 0.9, 1), _poly((0, 0.47), (0.5, 0), (1, 0.47), paint="c2"),
        _rect(0.42, 0.68, 0.58, 1, DARK)),
    "building": (_rect(0, 0, 1, 1), *(_rect(0.12 + 0.28 * i, 0.06 + 0.16 * j, 0.32 + 0.28 * i,
        0.16 + 0.16 * j, (50, 70, 95)) for i in range(3) for j in range(6))),
    "church": (_rect(0, 0.5, 0.62, 1), _poly((0, 0.5), (0.31, 0.3), (0.62, 0.5), paint=GREY),
        _rect(0.64, 0.28, 1, 1), _poly((0.64, 0.28), (0.82, 0.08), (1, 0.28), paint=GREY),
        _line((0.82, 0), (0.82, 0.1), w=0.03, paint=BLACK),
        _line((0.77, 0.03), (0.87, 0.03), w=0.03, paint=BLACK),
        ("pie", (0.74, 0.7, 0.9, 1.3), DARK, 180, 360)),
    "trees": (_rect(0.4, 0.7, 0.6, 1, TRUNK), _poly((0, 0.76), (0.5, 0), (1, 0.76))),
    "palm": (_line((0.5, 1), (0.56, 0.5), (0.45, 0.15), w=0.07, paint=TRUNK),
        *(_line((0.45, 0.15), end, w=0.06)
          for end in ((0, 0.35), (0.15, 0.02), (0.75, 0), (1, 0.3), (0.85, 0.45)))),
    "bush": (_ell(0, 0.3, 0.6, 1), _ell(0.38, 0.22, 1, 1), _ell(0.2, 0, 0.76, 0.8)),
    "person": _person(0, 1),
    "group": _person(0, 0.36) + _person(0.32, 0.68) + _person(0.64, 1),
    "dog": (_line((0.25, 0.55), (0.22, 1), (0.28, 0.55), (0.7, 0.55), (0.7, 1), w=0.1),
        _line((0.15, 0.45), (0, 0.15), w=0.08), _ell(0.12, 0.3, 0.82, 0.68),
        _ell(0.68, 0.05, 1, 0.45), _ell(0.86, 0.18, 0.93, 0.26, BLACK)),
    "horse": (_line((0.22, 1), (0.25, 0.5), (0.3, 1), w=0.07),
        _line((0.62, 1), (0.66, 0.5), (0.72, 1), w=0.07), _ell(0.12, 0.28, 0.82, 0.62),
        _poly((0.68, 0.42), (0.78, 0.05), (1, 0.14), (0.86, 0.45)),
        _line((0.13, 0.35), (0.03, 0.7), paint=DARK)),
    "sun": (*RAYS, _ell(0.2, 0.2, 0.8, 0.8)),
    "flag": (_line((0.05, 0), (0.05, 1), w=0.04, paint=GREY), _rect(0.08, 0.02, 1, 0.42),
        _rect(0.08, 0.16, 1, 0.28, "c2")),
    "mountain": (_poly((0, 1), (0.5, 0), (1, 1)),
        _poly((0.36, 0.28), (0.5, 0), (0.64, 0.28), paint="c2")),
    "rock": (_poly((0, 1), (0.08, 0.45), (0.35, 0.1), (0.7, 0), (0.95, 0.4), (1, 1)),),
    "fence": (*(_rect(0.02 + 0.12 * i, 0, 0.07 + 0.12 * i, 1) for i in range(9)),
        _rect(0, 0.2, 1, 0.32), _rect(0, 0.6, 1, 0.72)),
    "bird": (_line((0, 0.1), (0.5, 0.9), (1, 0.1), w=0.3),),
    "airplane": (_ell(0, 0.38, 1, 0.64), _poly((0.35, 0.5), (0.6, 0.5), (0.42, 1)),
        _poly((0.02, 0.5), (0.12, 0.5), (0.04, 0.05), paint="c2")),
    "flower": (*(_line((u, 1), (u, 0.3), w=0.06, paint=GREEN) for u in (0.2, 0.5, 0.8)),
        *(_ell(u - 0.17, v, u + 0.17, v + 0.34) for u, v in ((0.2, 0.15), (0.5, 0), (0.8, 0.15)))),
    "umbrella": (_line((0.5, 0.3), (0.5, 1), paint=GREY), ("pie", (0, 0, 1, 0.7), "c", 180, 360)),
    "lighthouse": (_poly((0.2, 1), (0.3, 0.15), (0.7, 0.15), (0.8, 1)),
        *(_rect(0.22, v, 0.78, v + 0.12, "c2") for v in (0.3, 0.55, 0.8)),
        _rect(0.3, 0.02, 0.7, 0.15, (250, 220, 60))),
    "cloud": (_ell(0, 0.35, 0.55, 1), _ell(0.25, 0, 0.75, 0.9), _ell(0.45, 0.3, 1, 1)),
}
HOUSE_WINDOWS = (_rect(0.2, 0.56, 0.36, 0.72, GLASS), _rect(0.64, 0.56, 0.8, 0.72, GLASS))
# fmt: on


# fmt: off
SKY_RGB = {"sky-blue": (95, 160, 230), "sky-light": (200, 205, 212),
           "sky-red-sunset-dusk": (235, 120, 60), "sky-night": (15, 20, 50)}
GROUND_RGB = {"grass": (70, 150, 60), "street": (105, 105, 110), "ocean": (30, 90, 170),
              "sand-beach": (225, 200, 140), "river": (50, 110, 190), "snow": (236, 240, 248),
              "ground": (150, 110, 70)}
MARKS_RGB = {"grass": (45, 115, 40), "street": (235, 235, 235), "ocean": (120, 170, 225),
             "sand-beach": (195, 170, 115), "river": (120, 170, 225), "snow": (200, 210, 228),
             "ground": (115, 80, 50)}
# fmt: on


def _draw_background(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, scene: Scene, size: int
) -> None:
    """Sky (stars at night), the ground with its water band, and a few texture marks."""
    top = scene.horizon * size
    labels, band = LAYOUTS[scene.layout].labels, LAYOUTS[scene.layout].water
    land = [g for g in labels if g not in ("ocean", "river")] or list(labels)
    draw.rectangle((0, top, size, size), fill=jitter(rng, GROUND_RGB[land[-1]]))
    if band and land[-1] not in ("ocean", "river"):
        water = [g for g in labels if g in ("ocean", "river")][0]
        y0, y1 = (top + (size - top) * v for v in band)
        draw.rectangle((0, y0, size, y1), fill=jitter(rng, GROUND_RGB[water]))
    for _ in range(12):
        x, y = rng.uniform(0, size), rng.uniform(top, size)
        mark = labels[-1] if not band or y > top + (size - top) * band[1] else labels[0]
        length = size / (8 if mark == "street" else 20)
        draw.line((x, y, x + length, y), fill=MARKS_RGB[mark], width=max(1, size // 64))
    if scene.sky:
        draw.rectangle((0, 0, size, top), fill=jitter(rng, SKY_RGB[scene.sky]))
    for _ in range(15 if scene.sky == "sky-night" else 0):
        x, y = rng.uniform(0, size), rng.uniform(0, top)
        draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=WHITE)


def _draw_object(draw: ImageDraw.ImageDraw, o: Obj, size: int) -> None:
    """Draw the kind's shapes into the object's box (bottom-centre at x, y; height h)."""
    kind = KINDS[o.kind]
    h = o.h * size
    w = h * kind.aspect
    x0, y0 = o.x * size - w / 2, o.y * size - h
    for prim, geo, paint, *extra in SHAPES[o.kind] + (HOUSE_WINDOWS if o.window else ()):
        fill = o.rgb if paint == "c" else o.rgb2 if paint == "c2" else paint
        if prim in ("poly", "line"):
            points = [(x0 + u * w, y0 + v * h) for u, v in geo]
            if prim == "poly":
                draw.polygon(points, fill=fill)
            else:
                draw.line(points, fill=fill, width=max(1, round(extra[0] * h)), joint="curve")
            continue
        box = (x0 + geo[0] * w, y0 + geo[1] * h, x0 + geo[2] * w, y0 + geo[3] * h)
        if prim == "rect":
            draw.rectangle(box, fill=fill)
        elif prim == "ell":
            draw.ellipse(box, fill=fill)
        elif prim == "ring":
            draw.ellipse(box, outline=fill, width=max(1, round(extra[0] * h)))
        else:
            draw.pieslice(box, extra[0], extra[1], fill=fill)


def render_scene(scene: Scene, image_size: int, seed: int = 0) -> Image.Image:
    """The scene as an RGB image [image_size, image_size]: drawn at twice the size,
    downsampled (Lanczos), plus Gaussian noise (std 4 grey levels); textures, stars, colour
    jitter and noise come from ``np.random.default_rng([seed, scene.item_id])``."""
    rng = np.random.default_rng([seed, scene.item_id])
    size = 2 * image_size
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    _draw_background(draw, rng, scene, size)
    for o in scene.objects:
        _draw_object(draw, o, size)
    img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 4.0, (image_size, image_size, 3))
    return Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------- writing
def eng_text(scene: Scene) -> str:
    """The raw ``.eng`` annotation of a scene, in the real layout (no final line break)."""
    nn, i = f"{scene.item_id // 1000:02d}", scene.item_id
    return (
        f"<DOC>\n<DOCNO>annotations/{nn}/{i}.eng</DOCNO>\n<TITLE>{scene.title}</TITLE>\n"
        f"<DESCRIPTION>{scene.description}</DESCRIPTION>\n<NOTES></NOTES>\n"
        f"<LOCATION>{scene.location}</LOCATION>\n<DATE>{scene.date}</DATE>\n"
        f"<IMAGE>images/{nn}/{i}.jpg</IMAGE>\n<THUMBNAIL>thumbnails/{nn}/{i}.jpg</THUMBNAIL>\n"
        "</DOC>"
    )


def _prepare_out(out: Path) -> tuple[Path, Path]:
    """The two roots under ``out``, emptied if a previous demo run wrote them (marked by
    ``demo_info.json``, written first); UserError if they hold anything else."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: expected a folder, found a file")
    roots = (out / "iaprtc12", out / "saiapr_tc-12")
    used = [r for r in roots if r.exists() and (not r.is_dir() or any(r.iterdir()))]
    if used and not (out / "demo_info.json").is_file():
        raise UserError(
            f"--out {out}: {used[0]} already exists and was not written by "
            "the demo generator (no demo_info.json); choose an empty folder"
        )
    for root in used:
        shutil.rmtree(root)
    return roots


def _check_args(n_items: int, image_size: int, seed: int) -> None:
    checks = (
        ("n_items (--n-items)", n_items, 2, 10_000),
        ("image_size (--image-size)", image_size, 16, 1024),
        ("seed (--seed)", seed, 0, 2**63 - 1),
    )
    for name, value, low, high in checks:
        if not low <= value <= high:
            raise UserError(f"{name}: expected an integer in [{low}, {high}], found {value}")


def generate_demo(out: Path, n_items: int = 1500, image_size: int = 96, seed: int = 0) -> dict:
    """Write the demo dataset under ``out`` (see the module docstring) and return
    {"iapr_root", "saiapr_root", "n_items", "label_names" (the wlist names, in id order),
    "label_stats" (:func:`label_stats` of the items)}. Deterministic in (n_items, seed,
    image_size). UserError on bad arguments or if ``out`` holds other data."""
    _check_args(n_items, image_size, seed)
    out = Path(out)
    iapr, saiapr = _prepare_out(out)
    params = {"n_items": n_items, "image_size": image_size, "seed": seed}
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_info.json").write_text(json.dumps(params, indent=2) + "\n", encoding="ascii")
    scenes = sample_scenes(n_items, seed)
    segments: dict[str, list[str]] = {}
    for scene in scenes:
        nn, i = f"{scene.item_id // 1000:02d}", scene.item_id
        for folder in (iapr / "images" / nn, iapr / "annotations_complete_eng" / nn):
            folder.mkdir(parents=True, exist_ok=True)
        render_scene(scene, image_size, seed).save(iapr / "images" / nn / f"{i}.jpg", quality=90)
        (iapr / "annotations_complete_eng" / nn / f"{i}.eng").write_bytes(
            eng_text(scene).encode("cp1252")
        )
        segments.setdefault(nn, []).extend(
            f"{i} {s} {LABEL_IDS[label]}" for s, label in enumerate(scene.labels, start=1)
        )
    for nn, lines in segments.items():
        (saiapr / nn).mkdir(parents=True, exist_ok=True)
        (saiapr / nn / "labels.txt").write_text("\n".join(lines) + "\n", encoding="ascii")
    wlist = "".join(f"{label_id}\t{name}\n" for label_id, name in sorted(WLIST.items()))
    (saiapr / "wlist.txt").write_text(wlist, encoding="ascii")
    return {
        "iapr_root": iapr,
        "saiapr_root": saiapr,
        "n_items": n_items,
        "label_names": [name for _, name in sorted(WLIST.items())],
        "label_stats": label_stats([set(s.labels) for s in scenes]),
    }


# ------------------------------------------------------------------------------- statistics
def label_stats(label_sets: list) -> dict:
    """Statistics of per-item label sets (any hashable labels): ``n_items``, ``n_labels``
    (distinct labels that occur), ``mean_labels`` (distinct labels per item) and
    ``chance_map``: the mean over items q of the fraction of the other items sharing at
    least one label with q (the mAP of a random ranking, in [0, 1])."""
    sets = [set(s) for s in label_sets]
    if len(sets) < 2:
        raise UserError(f"label_stats needs at least 2 items, found {len(sets)}")
    index = {label: j for j, label in enumerate(sorted(set().union(*sets), key=str))}
    y = np.zeros((len(sets), len(index)), dtype=np.float32)  # [n, L] multi-hot
    for row, s in enumerate(sets):
        y[row, [index[label] for label in s]] = 1.0
    shared = np.empty(len(sets))
    for start in range(0, len(sets), 2048):  # chunks keep memory small at 20k items
        hits = (y[start : start + 2048] @ y.T) > 0
        shared[start : start + len(hits)] = hits.sum(1) - hits[:, start:].diagonal()
    return {
        "n_items": len(sets),
        "n_labels": len(index),
        "mean_labels": float(y.sum(1).mean()),
        "chance_map": float((shared / (len(sets) - 1)).mean()),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(description="Write a synthetic IAPR TC-12 / SAIAPR demo dataset.")
    p.add_argument(
        "--out", type=Path, required=True, help="folder to write iaprtc12/ and saiapr_tc-12/ into"
    )
    p.add_argument("--n-items", type=int, default=1500, help="number of items (2-10000)")
    p.add_argument("--image-size", type=int, default=96, help="image side in pixels (16-1024)")
    p.add_argument("--seed", type=int, default=0, help="seed; same seed -> identical files")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: generate, then print where and the label statistics."""
    args = parse_args(argv)
    start = time.perf_counter()
    info = generate_demo(args.out, args.n_items, args.image_size, args.seed)
    stats = info["label_stats"]
    print(
        f"wrote {info['n_items']} items to {info['iapr_root']} and {info['saiapr_root']} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    print(
        f"labels/item {stats['mean_labels']:.2f}, distinct labels {stats['n_labels']}, "
        f"chance-level mAP {stats['chance_map']:.3f}"
    )
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
