"""What the synthetic demo dataset is made of: label names, object kinds, ground layouts, scenes.

A scene is a sky (or none), a ground layout and 1-4 objects of 24 kinds, each kind with its own
size, placement and colour family and its SAIAPR segment label. These are the tables and the
two dataclasses (:class:`Obj`, :class:`Scene`); :mod:`cmh.data.sources.demo_scenes` samples scenes from
them, :mod:`cmh.data.sources.demo_captions` describes them, :mod:`cmh.data.sources.demo_generator` draws and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]
BLACK, WHITE = (25, 25, 25), (245, 245, 245)

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


@dataclass(frozen=True)
class Kind:
    """An object kind: its SAIAPR label, box aspect (width / height), height range (fraction
    of the image height, at the front), placement ("sky", "horizon", "land", "water"), caption
    nouns and participles, colour words -> RGB, and RGBs for the second colour (its shapes
    are ``demo.SHAPES[kind]``)."""

    label: str
    aspect: float
    size: tuple[float, float]
    where: str
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    colours: dict[str, RGB]
    colours2: tuple[RGB, ...] = (WHITE,)


# fmt: off
SHIRTS = {"red": (210, 40, 40), "blue": (40, 80, 210), "yellow": (240, 210, 40),
          "white": (240, 240, 240), "green": (40, 160, 60), "orange": (240, 130, 30)}
KINDS = {
    "car": Kind("car", 1.8, (0.14, 0.22), "land", ("car", "automobile", "vehicle"),
        ("parked", "driving"),
        {"red": (205, 30, 30), "dark red": (135, 20, 25), "orange": (235, 115, 25)}),
    "bus": Kind("bus", 2.3, (0.18, 0.26), "land", ("bus", "coach"), ("parked", "driving"),
        {"yellow": (235, 195, 35), "white": (235, 235, 230)}, ((30, 90, 200), (200, 40, 40))),
    "bicycle": Kind("bicycle", 1.6, (0.12, 0.17), "land", ("bicycle", "bike"), ("parked",),
        {"blue": (30, 70, 205), "light blue": (90, 160, 230), "purple": (120, 50, 170)}),
    "boat": Kind("boat", 1.3, (0.16, 0.26), "water", ("boat", "sailing boat", "sailboat"),
        ("sailing", "anchored"),
        {"brown": (125, 70, 30), "dark brown": (80, 45, 20), "red": (170, 40, 30)}),
    "house": Kind("house", 1.0, (0.2, 0.32), "land", ("house", "home", "building"), (),
        {"white": (240, 240, 232), "beige": (225, 205, 160), "yellow": (235, 210, 90),
         "pink": (232, 170, 170)},
        ((170, 50, 35), (120, 60, 40))),
    "building": Kind("building", 0.55, (0.3, 0.45), "land",
        ("building", "tower block", "high-rise building"), (),
        {"grey": (140, 140, 145), "light grey": (185, 185, 190), "brown": (140, 100, 75)}),
    "church": Kind("church", 0.9, (0.28, 0.4), "land", ("church", "chapel"), (),
        {"white": (242, 242, 238), "cream": (235, 222, 190)}),
    "trees": Kind("trees", 0.6, (0.2, 0.34), "land", ("tree", "fir tree"), (),
        {"green": (40, 130, 45), "dark green": (20, 85, 35), "yellow": (190, 170, 40)}),
    "palm": Kind("palm", 0.8, (0.26, 0.38), "land", ("palm tree", "palm"), (),
        {"green": (50, 150, 60)}),
    "bush": Kind("bush", 1.5, (0.1, 0.16), "land", ("bush", "shrub"), (),
        {"dark green": (30, 78, 32), "olive": (118, 112, 36)}),
    "person": Kind("person", 0.45, (0.18, 0.26), "land", ("person", "man", "woman", "tourist"),
        ("standing", "walking"), SHIRTS),
    "group": Kind("group-of-persons", 1.3, (0.18, 0.26), "land",
        ("group of people", "few people", "group of tourists"), ("standing", "walking"), SHIRTS),
    "dog": Kind("dog", 1.5, (0.08, 0.12), "land", ("dog",), ("running", "sitting", "lying"),
        {"brown": (140, 90, 45), "black": (35, 30, 30), "white": (235, 230, 220),
         "light brown": (205, 165, 115)}),
    "horse": Kind("horse", 1.25, (0.2, 0.3), "land", ("horse",), ("grazing", "standing"),
        {"brown": (110, 65, 35), "dark brown": (70, 40, 25), "white": (230, 225, 215),
         "black": (30, 28, 28)}),
    "sun": Kind("sun", 1.0, (0.14, 0.2), "sky", ("sun",), (),
        {"yellow": (255, 225, 50), "orange": (255, 160, 40)}),
    "flag": Kind("flag", 0.75, (0.2, 0.3), "land", ("flag",), (),
        {"red": (210, 30, 35), "blue": (30, 60, 190), "green": (30, 140, 60)},
        (WHITE, (245, 215, 40))),
    "mountain": Kind("mountain", 1.8, (0.2, 0.34), "horizon", ("mountain", "hill", "peak"), (),
        {"grey": (125, 125, 135), "blue-grey": (105, 120, 150), "brown": (130, 105, 85)}),
    "rock": Kind("rock", 1.4, (0.08, 0.14), "land", ("rock", "boulder", "stone"), (),
        {"grey": (118, 112, 106), "dark grey": (78, 78, 80), "brown": (125, 95, 70)}),
    "fence": Kind("fence", 3.0, (0.08, 0.13), "land", ("fence", "wooden fence"), (),
        {"brown": (125, 85, 45), "white": (235, 235, 235)}),
    "bird": Kind("bird", 2.0, (0.06, 0.09), "sky", ("bird", "seagull"), ("flying",),
        {"black": BLACK, "white": WHITE}),
    "airplane": Kind("airplane", 2.2, (0.09, 0.13), "sky", ("plane", "airplane", "aircraft"),
        ("flying",), {"white": (240, 240, 245), "silver": (185, 190, 200)},
        ((200, 40, 40), (40, 70, 190))),
    "flower": Kind("flower", 1.2, (0.08, 0.12), "land", ("flowers",), (),
        {"red": (220, 40, 50), "pink": (240, 120, 180), "purple": (150, 60, 180)}),
    "umbrella": Kind("umbrella", 1.0, (0.16, 0.24), "land", ("umbrella", "parasol", "sunshade"),
        (), {"red": (210, 40, 40), "blue": (40, 90, 210), "yellow": (245, 210, 40)}),
    "lighthouse": Kind("lighthouse", 0.4, (0.3, 0.42), "land", ("lighthouse",), (),
        {"white": (245, 245, 245)}, ((200, 30, 30),)),
    "cloud": Kind("cloud", 2.2, (0.09, 0.14), "sky", ("cloud",), (),
        {"white": (246, 246, 250), "grey": (185, 185, 192)}),
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


def jitter(rng: np.random.Generator, rgb: RGB, amount: int = 18) -> RGB:
    """``rgb`` with each channel moved by a uniform integer in [-amount, amount], clipped
    to [0, 255]."""
    return tuple(int(v) for v in np.clip(np.add(rgb, rng.integers(-amount, amount + 1, 3)), 0, 255))
