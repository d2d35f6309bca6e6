"""Query / train sizes of the published protocols, and the label widths of the benchmarks.

Two families of papers split the same four benchmarks differently (the rest of the items is
the database, and training items are drawn from it; :mod:`cmh.data.splits`):

- ``dcmh`` (DCMH and its ports): MIRFlickr-25K 2,000 / 10,000; NUS-WIDE 2,100 / 10,500;
  MS-COCO 5,000 / 10,000; IAPR TC-12 2,000 / 10,000.
- ``clip`` (the CLIP-era toolboxes): 5,000 / 10,000 for every dataset.

Explicit sizes always win over the protocol's.
"""

from __future__ import annotations

from cmh.utils.errors import UserError

# dataset -> the label widths its circulated files have (NUS-WIDE: tc21 or tc10)
LABEL_WIDTHS: dict[str, tuple[int, ...]] = {
    "mirflickr": (24,),
    "nuswide": (21, 10),
    "coco": (80,),
    "iapr": (255,),
}
DATASETS = tuple(LABEL_WIDTHS)

# protocol -> dataset -> (n_query, n_train)
PROTOCOLS: dict[str, dict[str, tuple[int, int]]] = {
    "dcmh": {
        "mirflickr": (2000, 10000),
        "nuswide": (2100, 10500),
        "coco": (5000, 10000),
        "iapr": (2000, 10000),
    },
    "clip": {name: (5000, 10000) for name in DATASETS},
}


def _require_dataset(name: str) -> None:
    """UserError listing the known datasets unless ``name`` is one."""
    if name not in LABEL_WIDTHS:
        raise UserError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def check_dataset(name: str, n_labels: int) -> None:
    """UserError unless a ``name`` set has ``n_labels`` label columns (e.g. coco needs 80)."""
    _require_dataset(name)
    widths = LABEL_WIDTHS[name]
    if n_labels not in widths:
        expected = " or ".join(str(w) for w in widths)
        fits = [d for d, w in LABEL_WIDTHS.items() if n_labels in w]
        hint = f"; {n_labels} labels fit {', '.join(fits)}" if fits else ""
        raise UserError(
            f"dataset {name!r} has {expected} labels, but the files hold {n_labels}{hint}"
        )


def split_sizes(
    dataset: str, protocol: str, n_query: int | None = None, n_train: int | None = None
) -> tuple[int, int]:
    """(n_query, n_train) of ``protocol`` for ``dataset``; an explicit size replaces its part."""
    _require_dataset(dataset)
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    query, train = PROTOCOLS[protocol][dataset]
    return (query if n_query is None else n_query, train if n_train is None else n_train)
