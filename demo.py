"""A small synthetic dataset in the raw IAPR TC-12 / SAIAPR TC-12 layout, for offline CPU runs.

``python demo.py --out DIR`` (or ``generate_demo(DIR)``) writes, with NN = ID // 1000 as 2 digits:

- ``DIR/iaprtc12/images/NN/ID.jpg``: RGB JPEG, ``image_size`` x ``image_size``;
- ``DIR/iaprtc12/annotations_complete_eng/NN/ID.eng``: cp1252 annotation in the real layout;
- ``DIR/saiapr_tc-12/NN/labels.txt``: ``image_id segment_id label_id``, one line per segment;
- ``DIR/saiapr_tc-12/wlist.txt``: ``label_id<TAB>label_name`` (some concepts never occur);
- ``DIR/demo_info.json``: the generation parameters (marks DIR as a demo folder).

Each scene is a sky (or none), a ground layout and 1-4 objects of 24 kinds, each kind with its
own shape and colour family. Scenes, labels and captions are sampled first with one
``np.random.default_rng(seed)`` (:func:`sample_scenes`, no drawing); rendering is a pure
function of the scene and (seed, id). The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import UserError

RGB = tuple[int, int, int]
BLACK, WHITE, GLASS, DARK = (25, 25, 25), (245, 245, 245), (165, 205, 235), (60, 45, 35)
TRUNK, SKIN, GREEN, GREY = (105, 65, 30), (230, 185, 150), (45, 140, 55), (110, 110, 115)

# label id -> name: ids are the 1-based positions in the sorted list of the 255 real SAIAPR
# names (not the official numbering, which is unknown): non-contiguous, like the real ids.
# fmt: off
WLIST = {3: "airplane", 20: "bicycle", 21: "bird", 22: "boat", 29: "building", 31: "bus",
         32: "bush", 41: "car", 51: "church", 56: "cloud", 73: "dog", 84: "fence", 88: "flag",
         96: "flower", 105: "giraffe", 110: "grass", 111: "ground", 113: "group-of-persons",
         126: "horse", 127: "house", 144: "lighthouse", 160: "mountain", 166: "ocean",
         172: "palm", 176: "person", 178: "piano", 189: "river", 191: "rock",
         196: "sand-beach", 208: "sky-blue", 209: "sky-light", 210: "sky-night",
         211: "sky-red-sunset-dusk", 214: "snow", 220: "street", 221: "sun", 233: "trees",
         237: "umbrella", 244: "volcano", 252: "window"}
# fmt: on
LABEL_IDS = {name: label_id for label_id, name in WLIST.items()}


HOUSE_WINDOWS = (("rect", (0.2, 0.56, 0.36, 0.72), GLASS), ("rect", (0.64, 0.56, 0.8, 0.72), GLASS))


@dataclass(frozen=True)
class Kind:
    """An object kind: its SAIAPR label, box aspect (width / height), height range (fraction
    of the image height, at the front), placement ("sky", "horizon", "land", "water"), caption
    nouns and participles, colour words -> RGB, shapes, and RGBs for the second colour.

    A shape is (primitive, geometry, paint, *extra) in the object's unit box (u right, v down,
    0..1): "rect" / "ell" / "ring" / "pie" take a box (u0, v0, u1, v1), "poly" / "line" points;
    "ring" and "line" add a width (fraction of the height), "pie" start and end angles.
    paint is "c" (the object's colour), "c2" (its second colour) or a fixed RGB."""

    label: str
    aspect: float
    size: tuple[float, float]
    where: str
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    colours: dict[str, RGB]
    shapes: tuple
    colours2: tuple[RGB, ...] = (WHITE,)


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
SHIRTS = {"red": (210, 40, 40), "blue": (40, 80, 210), "yellow": (240, 210, 40),
          "white": (240, 240, 240), "green": (40, 160, 60), "orange": (240, 130, 30)}
WHEELS = (_ell(0.08, 0.62, 0.34, 1, BLACK), _ell(0.66, 0.62, 0.92, 1, BLACK))
RAYS = tuple(_line((0.5, 0.5), (0.5 + 0.5 * math.cos(a * math.pi / 4),
                                0.5 + 0.5 * math.sin(a * math.pi / 4))) for a in range(8))
KINDS = {
    "car": Kind("car", 1.8, (0.14, 0.22), "land", ("car", "automobile", "vehicle"),
        ("parked", "driving"),
        {"red": (205, 30, 30), "dark red": (135, 20, 25), "orange": (235, 115, 25)},
        (_rect(0, 0.35, 1, 0.82), _poly((0.18, 0.36), (0.3, 0.04), (0.72, 0.04), (0.84, 0.36)),
         _rect(0.32, 0.1, 0.7, 0.33, GLASS), *WHEELS)),
    "bus": Kind("bus", 2.3, (0.18, 0.26), "land", ("bus", "coach"), ("parked", "driving"),
        {"yellow": (235, 195, 35), "white": (235, 235, 230)},
        (_rect(0, 0.04, 1, 0.84), *(_rect(0.06 + 0.18 * i, 0.14, 0.2 + 0.18 * i, 0.42, GLASS)
         for i in range(5)), _rect(0, 0.55, 1, 0.62, "c2"), *WHEELS),
        ((30, 90, 200), (200, 40, 40))),
    "bicycle": Kind("bicycle", 1.6, (0.12, 0.17), "land", ("bicycle", "bike"), ("parked",),
        {"blue": (30, 70, 205), "light blue": (90, 160, 230), "purple": (120, 50, 170)},
        (("ring", (0, 0.5, 0.4, 1), BLACK, 0.08), ("ring", (0.6, 0.5, 1, 1), BLACK, 0.08),
         _line((0.2, 0.75), (0.42, 0.4), (0.8, 0.75), (0.72, 0.3), (0.85, 0.2), w=0.08),
         _line((0.2, 0.75), (0.55, 0.75), (0.42, 0.4), (0.72, 0.4), w=0.08))),
    "boat": Kind("boat", 1.3, (0.16, 0.26), "water", ("boat", "sailing boat", "sailboat"),
        ("sailing", "anchored"),
        {"brown": (125, 70, 30), "dark brown": (80, 45, 20), "red": (170, 40, 30)},
        (_line((0.5, 0.02), (0.5, 0.7), w=0.04, paint=BLACK),
         _poly((0.53, 0.04), (0.53, 0.66), (0.92, 0.66), paint=WHITE),
         _poly((0, 0.68), (1, 0.68), (0.84, 1), (0.16, 1)))),
    "house": Kind("house", 1.0, (0.2, 0.32), "land", ("house", "home", "building"), (),
        {"white": (240, 240, 232), "beige": (225, 205, 160), "yellow": (235, 210, 90),
         "pink": (232, 170, 170)},
        (_rect(0.1, 0.45, 0.9, 1), _poly((0, 0.47), (0.5, 0), (1, 0.47), paint="c2"),
         _rect(0.42, 0.68, 0.58, 1, DARK)),
        ((170, 50, 35), (120, 60, 40))),
    "building": Kind("building", 0.55, (0.3, 0.45), "land",
        ("building", "tower block", "high-rise building"), (),
        {"grey": (140, 140, 145), "light grey": (185, 185, 190), "brown": (140, 100, 75)},
        (_rect(0, 0, 1, 1), *(_rect(0.12 + 0.28 * i, 0.06 + 0.16 * j, 0.32 + 0.28 * i,
         0.16 + 0.16 * j, (50, 70, 95)) for i in range(3) for j in range(6)))),
    "church": Kind("church", 0.9, (0.28, 0.4), "land", ("church", "chapel"), (),
        {"white": (242, 242, 238), "cream": (235, 222, 190)},
        (_rect(0, 0.5, 0.62, 1), _poly((0, 0.5), (0.31, 0.3), (0.62, 0.5), paint=GREY),
         _rect(0.64, 0.28, 1, 1), _poly((0.64, 0.28), (0.82, 0.08), (1, 0.28), paint=GREY),
         _line((0.82, 0), (0.82, 0.1), w=0.03, paint=BLACK),
         _line((0.77, 0.03), (0.87, 0.03), w=0.03, paint=BLACK),
         ("pie", (0.74, 0.7, 0.9, 1.3), DARK, 180, 360))),
    "trees": Kind("trees", 0.6, (0.2, 0.34), "land", ("tree", "fir tree"), (),
        {"green": (40, 130, 45), "dark green": (20, 85, 35), "yellow": (190, 170, 40)},
        (_rect(0.4, 0.7, 0.6, 1, TRUNK), _poly((0, 0.76), (0.5, 0), (1, 0.76)))),
    "palm": Kind("palm", 0.8, (0.26, 0.38), "land", ("palm tree", "palm"), (),
        {"green": (50, 150, 60)},
        (_line((0.5, 1), (0.56, 0.5), (0.45, 0.15), w=0.07, paint=TRUNK),
         *(_line((0.45, 0.15), end, w=0.06)
           for end in ((0, 0.35), (0.15, 0.02), (0.75, 0), (1, 0.3), (0.85, 0.45))))),
    "bush": Kind("bush", 1.5, (0.1, 0.16), "land", ("bush", "shrub"), (),
        {"dark green": (30, 78, 32), "olive": (118, 112, 36)},
        (_ell(0, 0.3, 0.6, 1), _ell(0.38, 0.22, 1, 1), _ell(0.2, 0, 0.76, 0.8))),
    "person": Kind("person", 0.45, (0.18, 0.26), "land", ("person", "man", "woman", "tourist"),
        ("standing", "walking"), SHIRTS, _person(0, 1)),
    "group": Kind("group-of-persons", 1.3, (0.18, 0.26), "land",
        ("group of people", "few people", "group of tourists"), ("standing", "walking"), SHIRTS,
        _person(0, 0.36) + _person(0.32, 0.68) + _person(0.64, 1)),
    "dog": Kind("dog", 1.5, (0.08, 0.12), "land", ("dog",), ("running", "sitting", "lying"),
        {"brown": (140, 90, 45), "black": (35, 30, 30), "white": (235, 230, 220),
         "light brown": (205, 165, 115)},
        (_line((0.25, 0.55), (0.22, 1), (0.28, 0.55), (0.7, 0.55), (0.7, 1), w=0.1),
         _line((0.15, 0.45), (0, 0.15), w=0.08), _ell(0.12, 0.3, 0.82, 0.68),
         _ell(0.68, 0.05, 1, 0.45), _ell(0.86, 0.18, 0.93, 0.26, BLACK))),
    "horse": Kind("horse", 1.25, (0.2, 0.3), "land", ("horse",), ("grazing", "standing"),
        {"brown": (110, 65, 35), "dark brown": (70, 40, 25), "white": (230, 225, 215),
         "black": (30, 28, 28)},
        (_line((0.22, 1), (0.25, 0.5), (0.3, 1), w=0.07),
         _line((0.62, 1), (0.66, 0.5), (0.72, 1), w=0.07), _ell(0.12, 0.28, 0.82, 0.62),
         _poly((0.68, 0.42), (0.78, 0.05), (1, 0.14), (0.86, 0.45)),
         _line((0.13, 0.35), (0.03, 0.7), paint=DARK))),
    "sun": Kind("sun", 1.0, (0.14, 0.2), "sky", ("sun",), (),
        {"yellow": (255, 225, 50), "orange": (255, 160, 40)}, (*RAYS, _ell(0.2, 0.2, 0.8, 0.8))),
    "flag": Kind("flag", 0.75, (0.2, 0.3), "land", ("flag",), (),
        {"red": (210, 30, 35), "blue": (30, 60, 190), "green": (30, 140, 60)},
        (_line((0.05, 0), (0.05, 1), w=0.04, paint=GREY), _rect(0.08, 0.02, 1, 0.42),
         _rect(0.08, 0.16, 1, 0.28, "c2")),
        (WHITE, (245, 215, 40))),
    "mountain": Kind("mountain", 1.8, (0.2, 0.34), "horizon", ("mountain", "hill", "peak"), (),
        {"grey": (125, 125, 135), "blue-grey": (105, 120, 150), "brown": (130, 105, 85)},
        (_poly((0, 1), (0.5, 0), (1, 1)), _poly((0.36, 0.28), (0.5, 0), (0.64, 0.28),
         paint="c2"))),
    "rock": Kind("rock", 1.4, (0.08, 0.14), "land", ("rock", "boulder", "stone"), (),
        {"grey": (118, 112, 106), "dark grey": (78, 78, 80), "brown": (125, 95, 70)},
        (_poly((0, 1), (0.08, 0.45), (0.35, 0.1), (0.7, 0), (0.95, 0.4), (1, 1)),)),
    "fence": Kind("fence", 3.0, (0.08, 0.13), "land", ("fence", "wooden fence"), (),
        {"brown": (125, 85, 45), "white": (235, 235, 235)},
        (*(_rect(0.02 + 0.12 * i, 0, 0.07 + 0.12 * i, 1) for i in range(9)),
         _rect(0, 0.2, 1, 0.32), _rect(0, 0.6, 1, 0.72))),
    "bird": Kind("bird", 2.0, (0.06, 0.09), "sky", ("bird", "seagull"), ("flying",),
        {"black": BLACK, "white": WHITE}, (_line((0, 0.1), (0.5, 0.9), (1, 0.1), w=0.3),)),
    "airplane": Kind("airplane", 2.2, (0.09, 0.13), "sky", ("plane", "airplane", "aircraft"),
        ("flying",), {"white": (240, 240, 245), "silver": (185, 190, 200)},
        (_ell(0, 0.38, 1, 0.64), _poly((0.35, 0.5), (0.6, 0.5), (0.42, 1)),
         _poly((0.02, 0.5), (0.12, 0.5), (0.04, 0.05), paint="c2")),
        ((200, 40, 40), (40, 70, 190))),
    "flower": Kind("flower", 1.2, (0.08, 0.12), "land", ("flowers",), (),
        {"red": (220, 40, 50), "pink": (240, 120, 180), "purple": (150, 60, 180)},
        (*(_line((u, 1), (u, 0.3), w=0.06, paint=GREEN) for u in (0.2, 0.5, 0.8)),
         *(_ell(u - 0.17, v, u + 0.17, v + 0.34)
           for u, v in ((0.2, 0.15), (0.5, 0), (0.8, 0.15))))),
    "umbrella": Kind("umbrella", 1.0, (0.16, 0.24), "land", ("umbrella", "parasol", "sunshade"),
        (), {"red": (210, 40, 40), "blue": (40, 90, 210), "yellow": (245, 210, 40)},
        (_line((0.5, 0.3), (0.5, 1), paint=GREY), ("pie", (0, 0, 1, 0.7), "c", 180, 360))),
    "lighthouse": Kind("lighthouse", 0.4, (0.3, 0.42), "land", ("lighthouse",), (),
        {"white": (245, 245, 245)},
        (_poly((0.2, 1), (0.3, 0.15), (0.7, 0.15), (0.8, 1)),
         *(_rect(0.22, v, 0.78, v + 0.12, "c2") for v in (0.3, 0.55, 0.8)),
         _rect(0.3, 0.02, 0.7, 0.15, (250, 220, 60))),
        ((200, 30, 30),)),
    "cloud": Kind("cloud", 2.2, (0.09, 0.14), "sky", ("cloud",), (),
        {"white": (246, 246, 250), "grey": (185, 185, 192)},
        (_ell(0, 0.35, 0.55, 1), _ell(0.25, 0, 0.75, 0.9), _ell(0.45, 0.3, 1, 1))),
}
# fmt: on


@dataclass(frozen=True)
class Layout:
    """A ground layout: its SAIAPR labels (one segment each), the object kinds that stand on
    it (kind -> relative frequency), the water band (v0, v1) where boats float, as fractions
    of the ground region (0 = horizon, 1 = bottom), and photo titles."""

    labels: tuple[str, ...]
    kinds: dict[str, int]
    water: tuple[float, float] | None
    titles: tuple[str, ...]


# fmt: off
# object kinds per layout, with relative frequencies
LAYOUTS = {
    "grass": Layout(("grass",), {"house": 2, "trees": 2, "bush": 1, "person": 1, "group": 1,
        "dog": 1, "horse": 1, "flag": 1, "fence": 1, "bicycle": 1, "flower": 2, "church": 1,
        "mountain": 1}, None, ("Summer Meadow", "In the Countryside", "The Park")),
    "street": Layout(("street",), {"car": 3, "bus": 2, "bicycle": 2, "person": 1, "group": 1,
        "dog": 1, "house": 1, "building": 2, "church": 1, "trees": 1, "flag": 1}, None,
        ("Street Scene", "The Main Street", "Plaza de la Constitución")),
    "beach": Layout(("ocean", "sand-beach"), {"person": 1, "group": 1, "dog": 1, "umbrella": 2,
        "palm": 2, "rock": 1, "boat": 1}, (0.0, 0.3),
        ("At the Beach", "Beach Life", "On the Coast")),
    "ocean": Layout(("ocean",), {"boat": 3, "rock": 1, "lighthouse": 1, "mountain": 1},
        (0.0, 1.0), ("On the Sea", "The Harbour Entrance", "Open Water")),
    "river": Layout(("grass", "river"), {"trees": 2, "bush": 1, "house": 1, "horse": 1,
        "person": 1, "boat": 2, "mountain": 1, "fence": 1}, (0.3, 0.52),
        ("By the River", "The River Bank")),
    "snow": Layout(("snow",), {"mountain": 2, "trees": 2, "person": 1, "group": 1, "house": 1,
        "dog": 1}, None, ("Winter Landscape", "In the Snow", "Ski Trip")),
    "ground": Layout(("ground",), {"horse": 2, "rock": 1, "person": 1, "bush": 1, "house": 1,
        "mountain": 1, "fence": 1, "palm": 1}, None,
        ("On the Farm", "The Dry Plains", "Desert Road")),
}
SKIES = ("sky-blue", "sky-light", "sky-red-sunset-dusk", "sky-night", None)  # None: no sky
SKY_P = (0.26, 0.15, 0.12, 0.12, 0.35)
CLOUD_P = {"sky-blue": 0.3, "sky-light": 0.5, "sky-red-sunset-dusk": 0.2}
N_OBJECTS_P = (0.3, 0.35, 0.23, 0.12)  # 1, 2, 3, 4 objects (clouds not counted)
SINGLE = ("sun", "group", "lighthouse")  # at most one per scene
LOCATIONS = ("Cochabamba, Bolivia", "La Paz, Bolivia", "Cusco, Peru", "Arequipa, Peru",
             "Bogotá, Colombia", "Córdoba, Argentina", "Puerto Limón, Costa Rica",
             "Quito, Ecuador", "Santiago, Chile", "Sydney, Australia", "Melbourne, Australia")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
# fmt: on


@dataclass(frozen=True)
class Obj:
    """One drawn object: kind (key of KINDS), colour word, RGB colours, bottom-centre x and
    bottom y (fractions of the image, in [0, 1]), height h (fraction of the image height)."""

    kind: str
    colour: str
    rgb: RGB
    rgb2: RGB
    x: float
    y: float
    h: float
    window: bool = False  # a house drawn with windows (an extra "window" segment)


@dataclass(frozen=True)
class Scene:
    """One item: what is drawn, its segment labels (in segment order, repeats kept) and its
    annotation fields. ``description`` is the raw DESCRIPTION text, quirks included."""

    item_id: int
    sky: str | None
    layout: str
    horizon: float  # fraction of the image height; 0.0 when there is no sky
    objects: tuple[Obj, ...]
    labels: tuple[str, ...]
    description: str
    title: str
    location: str
    date: str

    @property
    def caption(self) -> str:
        """The description with whitespace normalised (as a parser reads it)."""
        return " ".join(self.description.split())


def _pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, rgb: RGB, amount: int = 18) -> RGB:
    return tuple(int(v) for v in np.clip(np.add(rgb, rng.integers(-amount, amount + 1, 3)), 0, 255))


def _place(rng: np.random.Generator, kind: str, layout: str, horizon: float, colour: str) -> Obj:
    """An object of ``kind`` placed in the scene, farther ones smaller (occlusion follows
    from drawing back to front)."""
    k, band = KINDS[kind], LAYOUTS[layout].water
    h = float(rng.uniform(*k.size))
    if k.where == "sky":
        y = float(rng.uniform(h + 0.02, max(horizon - 0.02, h + 0.03)))
    elif k.where == "horizon":
        y = horizon + float(rng.uniform(0.0, 0.04))
    else:
        if k.where == "water" and band:
            lo, hi = band[0] + 0.4 * (band[1] - band[0]), band[1]
        else:
            lo, hi = (band[1] + 0.1 if band and band[1] < 0.9 else 0.1), 1.0
        rel = float(rng.uniform(lo, hi))
        h *= 0.55 + 0.75 * rel  # farther is smaller; 1.3x at the front
        y = max(horizon + (1.0 - horizon) * rel, h + 0.02)
    rgb, rgb2 = _jitter(rng, k.colours[colour]), _jitter(rng, _pick(rng, k.colours2))
    x, window = float(rng.uniform(0.1, 0.9)), kind == "house" and rng.random() < 0.5
    return Obj(kind, colour, rgb, rgb2, x, y, h, window)


def _sample_objects(rng: np.random.Generator, sky: str | None, layout: str, horizon: float):
    """1-4 objects allowed on the layout (some repeated) plus clouds, in drawing order:
    sky objects, mountains, then the rest from back to front."""
    kinds_w = LAYOUTS[layout].kinds
    allowed = {k: w for k, w in kinds_w.items() if sky or KINDS[k].where != "horizon"}
    flying = (["bird", "airplane"] + (["sun"] if sky != "sky-night" else [])) if sky else []
    kinds: list[str] = []
    for _ in range(1 + rng.choice(4, p=N_OBJECTS_P)):
        repeatable = [k for k in kinds if k not in SINGLE]
        if repeatable and rng.random() < 0.3:
            kinds.append(_pick(rng, repeatable))
        elif flying and rng.random() < 0.15:
            kinds.append(_pick(rng, flying))
        else:
            weights = np.array(list(allowed.values()), dtype=float)
            kinds.append(list(allowed)[rng.choice(len(allowed), p=weights / weights.sum())])
        if kinds[-1] in SINGLE:
            allowed.pop(kinds[-1], None)
            flying = [k for k in flying if k != kinds[-1]]
    if sky in CLOUD_P and rng.random() < CLOUD_P[sky]:
        kinds += ["cloud"] * int(rng.integers(1, 4))
    first: dict[str, str] = {}
    objects = []
    for kind in kinds:
        same = kind in first and rng.random() < 0.6
        colour = first[kind] if same else _pick(rng, tuple(KINDS[kind].colours))
        first.setdefault(kind, colour)
        objects.append(_place(rng, kind, layout, horizon, colour))
    order = {"sky": 0, "horizon": 1, "land": 2, "water": 2}
    return sorted(objects, key=lambda o: (order[KINDS[o.kind].where], o.y))


# ------------------------------------------------------------------------------- captions
SKY_WORDS = {
    "sky-blue": ("blue sky", "a blue sky", "a clear blue sky"),
    "sky-light": ("a grey sky", "an overcast sky", "a cloudy white sky"),
    "sky-red-sunset-dusk": ("a red sky at sunset", "an orange evening sky", "the sunset"),
    "sky-night": ("a dark night sky", "night sky with stars", "a black sky"),
}
GROUND_WORDS = {
    "grass": ("green grass", "a green meadow", "a lawn", "grass in the foreground"),
    "street": ("a grey street", "an asphalt road", "a paved street", "the road"),
    "ocean": ("the sea", "the ocean", "blue water", "the calm sea"),
    "sand-beach": ("a sandy beach", "a beach", "yellow sand in the foreground"),
    "river": ("a river", "a small river", "a stream"),
    "snow": ("snow", "a snowy field", "white snow on the ground"),
    "ground": ("brown ground", "a dirt field", "dry brown earth", "a dusty plain"),
}
MOBILE = ("car", "bus", "bicycle", "person", "group", "dog", "horse")
STATIC = ("house", "building", "church", "trees", "palm", "fence")
RELATIONS = ("{a} in front of {b}", "{a} next to {b}", "{b} behind {a}")
NUMBERS = {2: ("two",), 3: ("three", "several", "some"), 4: ("four", "several", "some")}
IRREGULAR = {"person": "people", "man": "men", "woman": "women", "aircraft": "aircraft"}
# details that carry no label, as in the real captions; the second set has Latin-1 letters
# fmt: off
DETAILS = ("a small path", "a few puddles", "shadows on the ground", "a wooden bench",
           "a street lamp", "power lines", "a small sign")
DETAILS_LATIN1 = ("a small café in the background", 'a sign reading "Señor Pérez"',
                  "a stall selling piñatas", 'a poster saying "¡Bienvenidos!"')
# fmt: on


def _plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    last = IRREGULAR.get(last, last + ("es" if last.endswith(("s", "sh", "ch")) else "s"))
    return f"{head} {last}".strip()


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def _noun_phrase(rng: np.random.Generator, objs: list[Obj], verb: bool = False) -> str:
    """A noun phrase such as "a red car", "two dark green trees", "a man in a blue shirt"."""
    kind, n = KINDS[objs[0].kind], len(objs)
    noun = _pick(rng, kind.nouns)
    colour = objs[0].colour if len({o.colour for o in objs}) == 1 and rng.random() < 0.75 else ""
    wear = ""
    if colour and objs[0].kind in ("person", "group"):
        many = n > 1 or objs[0].kind == "group"
        garment = _pick(rng, ("shirt", "jacket", "top"))
        wear = f"in {colour} {garment}s" if many else f"in {_article(colour)} {colour} {garment}"
        colour = ""
    if n > 1:
        det, noun = _pick(rng, NUMBERS[n]), _plural(noun)
    elif noun == "flowers":
        det = _pick(rng, ("", "some"))
    else:
        det = _article(_join(colour, noun))
    participle = _pick(rng, kind.verbs) if verb and kind.verbs and rng.random() < 0.35 else ""
    return _join(det, colour, noun, wear, participle)


def _position(rng: np.random.Generator, objs: list[Obj], horizon: float) -> str:
    """Where the objects are: side (mean x) and/or depth, or "" (often left out)."""
    if rng.random() < 0.35:
        return ""
    x, where = float(np.mean([o.x for o in objs])), KINDS[objs[0].kind].where
    side = "on the left" if x < 0.35 else "on the right" if x > 0.65 else ""
    side = side or _pick(rng, ("in the middle", "in the centre"))
    rel = (objs[0].y - horizon) / max(1.0 - horizon, 1e-6)
    depth = {"sky": "in the sky", "horizon": "in the background"}.get(where, "")
    if where in ("land", "water") and horizon > 0:
        depth = "in the background" if rel < 0.4 else "in the foreground" if rel > 0.8 else ""
    if depth and rng.random() < 0.3:
        return f"{depth} {side}"
    return _pick(rng, [p for p in (side, depth) if p])


def _background_phrases(
    rng: np.random.Generator, scene_sky: str | None, layout: str, clouds: list[Obj]
) -> list[str]:
    """Phrases for the sky (with its clouds) and the ground; each left out with p = 0.12."""
    phrases = []
    if scene_sky:
        sky = _pick(rng, SKY_WORDS[scene_sky])
        if clouds and rng.random() < 0.5:
            sky = f"{sky} with {_noun_phrase(rng, clouds)}"
        elif clouds:
            phrases.append(_noun_phrase(rng, clouds))
        phrases.append(sky)
    if layout == "beach" and rng.random() < 0.4:
        phrases.append(_pick(rng, ("a sandy beach by the sea", "the sea and a beach")))
    else:
        phrases += [_pick(rng, GROUND_WORDS[g]) for g in LAYOUTS[layout].labels]
    return [p for p in phrases if rng.random() > 0.12]


def _caption_phrases(
    rng: np.random.Generator, sky: str | None, layout: str, horizon: float, objects: tuple[Obj, ...]
) -> list[str]:
    """IAPR-style phrases in shuffled order: background, objects grouped by kind (counts,
    colours, positions, synonyms), sometimes a relation "a in front of b"; an object group
    is left out with p = 0.05; an unlabelled detail is added with p = 0.15 (+0.04 Latin-1)."""
    groups: dict[str, list[Obj]] = {}
    for o in objects:
        groups.setdefault(o.kind, []).append(o)
    phrases = _background_phrases(rng, sky, layout, groups.pop("cloud", []))
    mobile, static = [k for k in groups if k in MOBILE], [k for k in groups if k in STATIC]
    if mobile and static and rng.random() < 0.35:
        a = _noun_phrase(rng, groups.pop(_pick(rng, mobile)))
        b = _noun_phrase(rng, groups.pop(_pick(rng, static)))
        phrases.append(_pick(rng, RELATIONS).format(a=a, b=b))
    for objs in groups.values():
        phrase = _join(_noun_phrase(rng, objs, verb=True), _position(rng, objs, horizon))
        if rng.random() > 0.05 or not phrases:
            phrases.append(phrase)
    if rng.random() < 0.15:
        phrases.append(_pick(rng, DETAILS))
    if rng.random() < 0.04:
        phrases.append(_pick(rng, DETAILS_LATIN1))
    return [phrases[i] for i in rng.permutation(len(phrases))]


def _raw_description(rng: np.random.Generator, phrases: list[str]) -> str:
    """The DESCRIPTION text "p1; p2; p3;" with the real data's quirks, each with p = 0.03:
    no final ';', a double space, a line break after a ';', a trailing space or line break."""
    text = "; ".join(phrases) + ";"
    no_semicolon, double, two_lines, space, newline = rng.random(5) < 0.03
    if no_semicolon:
        text = text[:-1]
    if double and " " in text:
        i = _pick(rng, [i for i, c in enumerate(text) if c == " "])
        text = text[:i] + " " + text[i:]
    if two_lines and "; " in text:
        i = _pick(rng, [i for i in range(len(text) - 1) if text[i : i + 2] == "; "])
        text = text[: i + 1] + "\n" + text[i + 2 :]
    return text + (" " if space else "") + ("\n" if newline else "")


def _sample_scene(rng: np.random.Generator, item_id: int) -> Scene:
    sky = SKIES[rng.choice(len(SKIES), p=SKY_P)]
    layout = _pick(rng, tuple(LAYOUTS))
    horizon = float(rng.uniform(0.35, 0.6)) if sky else 0.0
    objects = tuple(_sample_objects(rng, sky, layout, horizon))
    labels = ([sky] if sky else []) + list(LAYOUTS[layout].labels)
    for o in objects:
        labels += [KINDS[o.kind].label] + (["window"] if o.window else [])
    phrases = _caption_phrases(rng, sky, layout, horizon, objects)
    month, year = _pick(rng, MONTHS), int(rng.integers(2000, 2007))
    date = f"{int(rng.integers(1, 29))} {month} {year}" if rng.random() < 0.3 else f"{month} {year}"
    return Scene(
        item_id,
        sky,
        layout,
        horizon,
        objects,
        tuple(labels),
        _raw_description(rng, phrases),
        _pick(rng, LAYOUTS[layout].titles),
        _pick(rng, LOCATIONS),
        date,
    )


def sample_scenes(n_items: int, seed: int = 0) -> list[Scene]:
    """The ``n_items`` scenes of :func:`generate_demo` (same seed -> same scenes), without
    drawing anything. Ids start at 25 and grow by 1-9 (non-contiguous, like the real ids)."""
    rng = np.random.default_rng(seed)
    ids = 25 + np.concatenate([[0], np.cumsum(rng.integers(1, 10, max(n_items - 1, 0)))])
    return [_sample_scene(rng, int(i)) for i in ids[:n_items]]


# ------------------------------------------------------------------------------- drawing
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
    draw.rectangle((0, top, size, size), fill=_jitter(rng, GROUND_RGB[land[-1]]))
    if band and land[-1] not in ("ocean", "river"):
        water = [g for g in labels if g in ("ocean", "river")][0]
        y0, y1 = (top + (size - top) * v for v in band)
        draw.rectangle((0, y0, size, y1), fill=_jitter(rng, GROUND_RGB[water]))
    for _ in range(12):
        x, y = rng.uniform(0, size), rng.uniform(top, size)
        mark = labels[-1] if not band or y > top + (size - top) * band[1] else labels[0]
        length = size / (8 if mark == "street" else 20)
        draw.line((x, y, x + length, y), fill=MARKS_RGB[mark], width=max(1, size // 64))
    if scene.sky:
        draw.rectangle((0, 0, size, top), fill=_jitter(rng, SKY_RGB[scene.sky]))
    for _ in range(15 if scene.sky == "sky-night" else 0):
        x, y = rng.uniform(0, size), rng.uniform(0, top)
        draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=WHITE)


def _draw_object(draw: ImageDraw.ImageDraw, o: Obj, size: int) -> None:
    """Draw the kind's shapes into the object's box (bottom-centre at x, y; height h)."""
    kind = KINDS[o.kind]
    h = o.h * size
    w = h * kind.aspect
    x0, y0 = o.x * size - w / 2, o.y * size - h
    for prim, geo, paint, *extra in kind.shapes + (HOUSE_WINDOWS if o.window else ()):
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
            "demo.py (no demo_info.json); choose an empty folder"
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
    p = argparse.ArgumentParser(description="Write a synthetic IAPR TC-12 / SAIAPR demo dataset.")
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
