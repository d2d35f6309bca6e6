"""Data sources by name: each input ``data.py prepare`` reads registers one :class:`DataSource`.

A source is named by its flags: ``--iapr-root`` (raw), ``--lists`` (lists), ``--mat`` (mat),
``--twemoji`` (twemoji); the first source (by ``order``) whose flags are given is the input, and
every other flag given must be one it accepts (or one every input takes: ``--out``, ``--seed``,
...). ``python data.py prepare --help`` lists the registered sources. A source either prepares
itself (``prepare(config)``) or, for sets read whole, gives ``plan(config)`` (items, labels,
splits) and ``stage_images(planned, folder)`` and lets cmh.data.prepare write the folder.
Either way ``config.out`` exists when it is called, held by this prepare alone
(cmh.utils.folder_lock), and what it wrote is taken back if it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cmh.utils.errors import UserError

COMMON = ("out", "seed", "vocab_size", "check_images", "strict", "overwrite", "n_val", "command")


@dataclass(frozen=True)
class DataSource:
    """name: the source's name. summary: one line for --help. selects: the flags (dests) that
    name this input, its main flag first. accepts: its other flags, shared ones included.
    prepare / plan + stage_images: how it is read (see the module docstring). order: when the
    flags of two inputs are given, the one with the lower order names the input."""

    name: str
    summary: str
    selects: tuple[str, ...]
    accepts: tuple[str, ...] = ()
    prepare: Callable[[Any], dict] | None = None
    plan: Callable[[Any], Any] | None = None
    stage_images: Callable[[Any, Any], tuple] | None = None
    order: int = 100  # the lower, the earlier its flags are looked for


_SOURCES: dict[str, DataSource] = {}


def register_source(source: DataSource) -> DataSource:
    if source.name in _SOURCES:
        raise ValueError(f"a data source named {source.name!r} is registered already")
    if (source.prepare is None) == (source.plan is None or source.stage_images is None):
        raise ValueError(f"data source {source.name!r}: give prepare, or plan and stage_images")
    _SOURCES[source.name] = source
    return source


def registered_sources() -> list[DataSource]:
    """In the order their flags are looked for (``order``, then name)."""
    return sorted(_SOURCES.values(), key=lambda s: (s.order, s.name))


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def select_source(config) -> DataSource:
    """The input the flags given name; UserError naming the flags that do not go together, or
    what to give."""
    sources = registered_sources()
    own = {d for s in sources for d in (*s.selects, *s.accepts)}
    given = [d for d in sorted(own) if config.get(d) is not None]
    chosen = next((s for s in sources if any(config.get(d) is not None for d in s.selects)), None)
    if chosen is None:
        if given:  # a flag of some input, without the flag that names the input
            owner = next(s for s in sources if given[0] in s.accepts)
            raise UserError(f"{flag(given[0])} goes with {flag(owner.selects[0])} ({owner.summary}); "
                            f"add {flag(owner.selects[0])}")  # fmt: skip
        usage = " or ".join(f"{flag(s.selects[0])} ({s.name})" for s in sources)
        raise UserError(f"give the input to prepare: {usage} (python data.py prepare --help)")
    named = next(d for d in chosen.selects if config.get(d) is not None)
    foreign = [d for d in given if d not in (*chosen.selects, *chosen.accepts)]
    if foreign:
        raise UserError(
            f"{flag(named)} and {flag(foreign[0])} do not go together: {flag(named)} names the "
            f"{chosen.name} input ({chosen.summary}); {flag(foreign[0])} belongs to another"
        )
    return chosen
