"""The typed configuration of a run: a dataclass with one field per flag of its entry point.

The fields are generated from the parser itself (name, type and default of each flag), so a flag
is declared once, with its help, and an objective's own flags (cmh.objectives) join the
configuration when it registers them. Library code takes this object (or explicit parameters),
never the argparse Namespace; every field is always present, so a run folder's args.json from an
older version loads with today's defaults for the flags it lacks (:meth:`from_dict`).

    config = train_flags.parse_args(argv)     # a TrainConfig
    config.lr, config.get("image_lr"), config.to_dict()
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from typing import Any


def _field_type(action: argparse.Action) -> type:
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        return bool
    return action.type if action.type in (int, float) else str


def _get(self, key: str, default: Any = None) -> Any:
    """The field ``key`` (a flag's dest), or ``default`` for a name that is no field."""
    return self.__dict__.get(key, default)


def _to_dict(self) -> dict:
    return dict(self.__dict__)


def _from_dict(cls, values: dict):
    """A config of ``values``; fields they lack keep their defaults, keys it has no field for
    (a flag since removed) are dropped."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def config_type(name: str, parser: argparse.ArgumentParser, extra: tuple = ()) -> type:
    """The dataclass of ``parser``'s flags (plus ``extra`` fields: (name, type, default))."""
    flags = tuple(
        (a.dest, _field_type(a), None if a.default is argparse.SUPPRESS else a.default)
        for a in parser._actions
        if a.dest not in ("help", argparse.SUPPRESS)
    )
    return _make(name, flags + tuple(extra))


@functools.cache
def _make(name: str, fields: tuple) -> type:
    specs = [
        (n, t, dataclasses.field(default_factory=list) if d == () else dataclasses.field(default=d))
        for n, t, d in fields
    ]
    methods = {"get": _get, "to_dict": _to_dict, "from_dict": classmethod(_from_dict)}
    return dataclasses.make_dataclass(name, specs, namespace=methods)


def from_namespace(name: str, parser: argparse.ArgumentParser, ns: argparse.Namespace, extra=()):
    """``ns`` (a parse of ``parser``) as its typed config."""
    return config_type(name, parser, extra).from_dict(vars(ns))
