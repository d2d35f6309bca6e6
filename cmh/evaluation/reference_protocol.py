"""The reference's protocol beside ours (--query-every): the queries' mAP curve, and the epoch
the reference would have reported from it. Reported only, never used for model selection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from cmh.evaluation.encoding import default_directions, retrieval_metrics
from cmh.runs.run_folder import write_jsonl


def query_protocol(model, run, epoch: int) -> dict:
    """The reference's protocol (--query-every): mAP of the queries against the database at this
    epoch, appended to RUN/query_curve.jsonl. Reported beside the validation-selected numbers,
    never used for selection: nothing here touches the weights, the optimizer or any RNG
    (the loaders are seeded on their own; tested: the same weights with and without it)."""
    enc = run.encode(model, ("query", "database"))
    record = {
        "epoch": epoch,
        **retrieval_metrics(enc["query"], enc["database"], default_directions(model)),
    }
    write_jsonl(run.out / "query_curve.jsonl", record)
    return record


def seed_protocol(out: Path) -> dict:
    """From RUN/query_curve.jsonl, the epoch the reference would have reported: the best mean of
    the tie-by-index mAPs on the queries (the first on ties) -> {"seed_protocol_epoch",
    "seed_protocol_map_<d>"}; {} without a query curve. Torn lines (a kill) are skipped."""
    path = out / "query_curve.jsonl"
    if not path.is_file():
        return {}
    best, chosen = -math.inf, None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        maps = {k: v for k, v in record.items() if k.startswith("map_") and not k.endswith("_avg")}
        if maps and float(np.mean(list(maps.values()))) > best:
            best, chosen = float(np.mean(list(maps.values()))), record
    if chosen is None:
        return {}
    maps = {f"seed_protocol_{k}": v for k, v in chosen.items() if k.startswith("map_")}
    return {"seed_protocol_epoch": chosen["epoch"], **maps}
