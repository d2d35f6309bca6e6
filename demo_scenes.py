"""What the synthetic demo dataset shows: object kinds, ground layouts and seeded scene sampling.

A scene is a sky (or none), a ground layout and 1-4 objects of 24 kinds, each kind with its own
size, placement and colour family, plus its SAIAPR segment labels and an IAPR-style caption with
the real data's quirks. :func:`sample_scenes` draws them all from one
``np.random.default_rng(seed)``; nothing is drawn here (``demo.py`` renders and writes).
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
    rgb, rgb2 = jitter(rng, k.colours[colour]), jitter(rng, _pick(rng, k.colours2))
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
    """The ``n_items`` scenes of ``demo.generate_demo`` (same seed -> same scenes), without
    drawing anything. Ids start at 25 and grow by 1-9 (non-contiguous, like the real ids)."""
    rng = np.random.default_rng(seed)
    ids = 25 + np.concatenate([[0], np.cumsum(rng.integers(1, 10, max(n_items - 1, 0)))])
    return [_sample_scene(rng, int(i)) for i in ids[:n_items]]
