"""A sweep folder of runs (scripts/run_all_bits.sh --seeds): OUT/bits{B}/seed{S}/, read back as
finished runs and unfinished folders (scripts/seed_results.py, scripts/compare_recipes.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

RUN_FOLDER = re.compile(r"seed(-?\d+)$")
BITS_FOLDER = re.compile(r"bits(\d+)$")


def run_folders(out: Path) -> dict[int, list[Path]]:
    """{bits: [OUT/bits{B}/seed{S}, ...]} for every such folder, by code length and seed."""
    found: dict[int, list[Path]] = {}
    for bits_dir in sorted(out.glob("bits*")):
        b = BITS_FOLDER.match(bits_dir.name)
        if not (b and bits_dir.is_dir()):
            continue
        seeds = [p for p in bits_dir.glob("seed*") if p.is_dir() and RUN_FOLDER.match(p.name)]
        seeds.sort(key=lambda p: int(RUN_FOLDER.match(p.name).group(1)))
        if seeds:
            found[int(b.group(1))] = seeds
    return dict(sorted(found.items()))


def load_run(run_dir: Path, bits: int) -> dict | None:
    """{"seed", "bits", "results", "run"} of a finished run folder; None without results.json.
    The seed is args.json's (the folder name's when args.json lacks it)."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    args_path = run_dir / "args.json"
    args = json.loads(args_path.read_text()) if args_path.is_file() else {}
    seed = args["seed"] if "seed" in args else int(RUN_FOLDER.match(run_dir.name).group(1))
    return {
        "seed": seed,
        "bits": results.get("bits", bits),
        "results": results,
        "run": str(run_dir),
    }


def load_sweep(out: Path) -> tuple[list[dict], list[Path], dict[int, list[Path]]]:
    """(finished runs, unfinished run folders, every run folder by code length) of a sweep."""
    folders = run_folders(out)
    runs, unfinished = [], []
    for bits, dirs in folders.items():
        for run_dir in dirs:
            run = load_run(run_dir, bits)
            if run is None:
                unfinished.append(run_dir)
            else:
                runs.append(run)
    return runs, unfinished, folders
