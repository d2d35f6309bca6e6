"""Seeded sampling of the synthetic demo scenes: objects placed in a layout, labels, caption.

:func:`sample_scenes` draws every scene from one ``np.random.default_rng(seed)``; nothing is
drawn on an image here (:mod:`cmh.data.sources.demo_generator` renders and writes).
"""

from __future__ import annotations

import numpy as np

from cmh.data.sources.demo_captions import _caption_phrases, _raw_description
from cmh.data.sources.demo_kinds import (
    CLOUD_P,
    KINDS,
    LAYOUTS,
    LOCATIONS,
    MONTHS,
    N_OBJECTS_P,
    SINGLE,
    SKIES,
    SKY_P,
    Obj,
    Scene,
    _pick,
    jitter,
)


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
