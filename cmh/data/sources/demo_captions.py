"""IAPR-style captions of the demo scenes, with the real data's quirks (pure, seeded).

The phrases name the sky, the ground and the objects (counts, colours, positions, relations)
plus details that carry no label, as the real captions do; :func:`_raw_description` adds the
raw files' irregular spacing, line breaks and final ``;``.
"""

from __future__ import annotations

import numpy as np

from cmh.data.sources.demo_kinds import KINDS, LAYOUTS, Obj, _pick

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
