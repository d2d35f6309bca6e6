"""Recipes: named sets of training settings, each setting an ordinary flag of its own.

A recipe is a data file of this folder, ``recipes/NAME.toml`` (read with the standard library's
tomllib): a one-line ``summary`` and a ``[settings]`` table of flag values; every file there is a
recipe, ``--recipe NAME`` picks it, and ``--help`` lists them. ``--recipe default`` is this
project's; ``--recipe seed`` what the reference implementation behind the published IAPR TC-12
numbers does (``shared/SEED-RECIPE.md``); ``--recipe dcmh`` DCMH's public schedule. The files
say, setting by setting, what each one does and why. A recipe only fills the flags the user did
not give (cmh.config.train_flags: flags > --config FILE > --demo > recipe > defaults.toml).
"""

from __future__ import annotations

import functools
from pathlib import Path

import tomllib

from cmh.utils.errors import UserError

FOLDER = Path(__file__).with_name("recipes")


def read_toml(path: Path, what: str) -> dict:
    """A TOML file as a dict; UserError naming the file (and the line) when it cannot be read."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{what} {path}: cannot read it ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{what} {path}: not valid TOML ({e})") from None


@functools.cache
def _recipes() -> dict[str, dict]:
    recipes = {}
    for path in sorted(FOLDER.glob("*.toml")):
        data = read_toml(path, "recipe")
        if not isinstance(data.get("settings"), dict) or not isinstance(data.get("summary"), str):
            raise UserError(f"recipe {path}: needs a summary line and a [settings] table")
        recipes[path.stem] = data
    return recipes


def recipe_names() -> list[str]:
    """default first, then the others by name."""
    return sorted(_recipes(), key=lambda n: (n != "default", n))


def recipe(name: str) -> dict:
    """The settings of recipe ``name``: every setting any recipe has, None where it is off."""
    settings = _recipes()[name]["settings"]
    return {key: settings.get(key) for key in recipe_settings()}


def summary(name: str) -> str:
    return _recipes()[name]["summary"]


def recipe_settings() -> tuple[str, ...]:
    """The flags recipes set (the union over the recipes, in the default recipe's order)."""
    keys: dict[str, None] = {}
    for name in recipe_names():
        keys |= dict.fromkeys(_recipes()[name]["settings"])
    return tuple(keys)


def differences(other: str = "seed") -> dict[str, tuple]:
    """{setting: (default recipe's value, the other's)} for the settings that differ."""
    a, b = recipe("default"), recipe(other)
    return {k: (a[k], b[k]) for k in recipe_settings() if a[k] != b[k]}


def help_text() -> str:
    """The --recipe help: each recipe's summary; the values are shown with each flag."""
    parts = [f"{name}: {summary(name)}" for name in recipe_names()]
    return "named settings, each a flag of its own (explicit flags win; cmh/config/recipes/): " + "; ".join(parts)
