"""Show that a refactor did not change behaviour: run the same trainings in an OLD revision and in
the NEW code (the working tree, or --new REV) and compare what they wrote, number for number.

    python scripts/compare_behaviour.py                          # d44c9e6 vs the working tree
    python scripts/compare_behaviour.py --old d44c9e6 --new HEAD --only demo graphs
    python scripts/compare_behaviour.py --isa-spread --only demo # also: AVX2 kernels vs default

A revision is materialised with ``git archive REV | tar -x`` into the output folder (no worktree,
the repository's git state untouched); the working tree is the repository folder itself. Each run
is ``python train.py ...`` as a subprocess with cwd = its tree, so each tree imports its own
``cmh`` (the script's folder comes first on sys.path). Each tree generates its own demo data inside
its own output folder. Per case, metrics.jsonl must be identical line by line, floats exactly,
after dropping every key whose name contains "seconds"; results.json's numeric entries likewise
(an entry later work added on purpose, ADDED_SINCE, is named in the verdict, not counted as a
difference); and the printed final I2T / T2I mAP. Exit 0: all identical; 1: a difference or a
failed run; 2: bad input (an unknown revision, an unknown case).

--isa-spread also runs the demo case once more in the NEW tree with
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 and prints how far it lands from the default
kernels (a measurement: it does not change the exit code).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OLD = "d44c9e6"  # the last commit before the cmh/ redesign
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

# tests/conftest.py's TINY_FLAGS as they were at the redesign (random ResNet-18 at 32 px, a 2-layer
# BERT of width 64); the tests have since used timm's test_resnet, these stay what was compared
TINY_FLAGS = ["--image-size", "32", "--image-weights", "none", "--text-model", "tiny",
              "--bits", "16", "--margin", "6", "--batch-size", "16", "--lr", "1e-3",
              "--max-length", "24", "--eval-every", "1"]  # fmt: skip
# case -> (dataset: "demo" (train.py --demo-dir) or "tiny" (data.py demo, 120 items), flags)
CASES = {
    "demo": ("demo", ["--demo"]),
    "dcmh": ("demo", ["--demo", "--objective", "dcmh"]),
    "recipe-seed": ("demo", ["--demo", "--recipe", "seed", "--epochs", "2"]),
    "graphs": ("tiny", [*TINY_FLAGS, "--epochs", "2", "--cuda-graphs", "--resident-data"]),
}
FINAL_LINE = re.compile(r"^\s*(I2T|T2I)\s+(\d+\.\d+)\b", re.MULTILINE)


# ---- comparison (pure) ------------------------------------------------------------------------


def drop_seconds(value):
    """``value`` with every dict key whose name contains "seconds" removed, at any depth."""
    if isinstance(value, dict):
        return {k: drop_seconds(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [drop_seconds(v) for v in value]
    return value


def first_difference(old, new, key: str = "") -> str | None:
    """The first place where two JSON values differ ("key 'loss': 1.5 vs 1.25"), or None.
    Floats compare exactly; a key present on one side only is a difference."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*old, *(k for k in new if k not in old)]:
            name = f"{key}.{k}" if key else k
            if k not in old or k not in new:
                return f"key '{name}' only in {'new' if k not in old else 'old'}"
            found = first_difference(old[k], new[k], name)
            if found:
                return found
        return None
    if type(old) is not type(new) or old != new:
        return f"key '{key}': {old!r} vs {new!r}" if key else f"{old!r} vs {new!r}"
    return None


def compare_jsonl(old: Path, new: Path) -> str | None:
    """None when the two metrics.jsonl files are identical line by line after drop_seconds;
    otherwise the first difference ("metrics.jsonl line 3: key 'loss': ... vs ...")."""
    a, b = (p.read_text().splitlines() for p in (old, new))
    for i, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        found = first_difference(drop_seconds(json.loads(x)), drop_seconds(json.loads(y)))
        if found:
            return f"{old.name} line {i}: {found}"
    if len(a) != len(b):
        return f"{old.name}: {len(a)} lines (old) vs {len(b)} lines (new)"
    return None


def metric_entries(results: dict) -> dict:
    """results.json's numeric entries (metrics, counts, the best epoch), "seconds" keys dropped."""
    return {k: v for k, v in drop_seconds(results).items()
            if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip


def final_maps(output: str) -> tuple[float, float] | None:
    """The final I2T and T2I mAP (ties by index) of train.py's printed table, or None."""
    found = dict(FINAL_LINE.findall(output))  # the last of each wins
    if "I2T" not in found or "T2I" not in found:
        return None
    return float(found["I2T"]), float(found["T2I"])


# results.json entries added after the redesign on purpose, each with the commit and its reason
ADDED_SINCE = {"epochs": "9b48f1f: --resume compares it to say a run is finished"}


def compare_runs(old: dict, new: dict) -> str:
    """The verdict "identical" (naming the ADDED_SINCE entries only the new run wrote), or what
    differs first, between two finished runs (see run_case)."""
    sides = (("old", old), ("new", new))
    for side, r in sides:
        if r["rc"] != 0:
            return f"{side} run failed (exit {r['rc']}; see {r['log']})"
    for (side, r), name in ((s, n) for s in sides for n in ("metrics.jsonl", "results.json")):
        if not (r["out"] / name).is_file():
            return f"{side} run wrote no {name} (see {r['log']})"
    if old["maps"] != new["maps"]:
        return f"printed mAP: {old['maps']} vs {new['maps']}"
    found = compare_jsonl(old["out"] / "metrics.jsonl", new["out"] / "metrics.jsonl")
    if found:
        return found
    before, after = (metric_entries(json.loads((r["out"] / "results.json").read_text()))
                     for r in (old, new))  # fmt: skip
    added = [k for k in ADDED_SINCE if k in after and k not in before]
    found = first_difference(before, {k: v for k, v in after.items() if k not in added})
    if found:
        return f"results.json: {found}"
    return "identical" + "".join(f"; results.json adds '{k}' ({ADDED_SINCE[k]})" for k in added)


# ---- running ----------------------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess:
    """``git -C REPO ARGS``, its output captured."""
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def check_revision(flag: str, rev: str) -> str | None:
    """None when ``rev`` names a commit of this repository; otherwise a one-line error."""
    if git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        return f"error: {flag} {rev}: not a commit of the repository {REPO}"
    return None


def materialise(rev: str | None, into: Path) -> Path:
    """The tree of ``rev`` extracted under ``into`` (git archive | tar), or the working tree."""
    if rev is None:
        return REPO
    tree = into / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", rev], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {rev} failed")
    return tree


def run_logged(cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> int:
    """Run ``cmd`` in ``cwd`` with stdout and stderr into ``log``; its exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        return subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def has_flag(python: str, tree: Path, flag: str) -> bool:
    """True when ``python train.py --help`` in ``tree`` lists ``flag``."""
    done = subprocess.run([python, "train.py", "--help"], cwd=tree, capture_output=True, text=True)
    return flag in done.stdout


def tiny_data(side: dict, python: str) -> Path:
    """The side's tiny prepared dataset (120 items, 32 px), made once by its own data.py."""
    root = side["dir"] / "tiny-data"
    if not (root / "prepared").is_dir():
        cmd = [python, "data.py", "demo", "--out", str(root), "--n-items", "120",
               "--image-size", "32"]  # fmt: skip
        if run_logged(cmd, side["tree"], side["dir"] / "logs" / "tiny-data.log") != 0:
            raise RuntimeError(f"data.py demo failed in {side['tree']}")
    return root / "prepared"


def run_case(side: dict, case: str, python: str, env: dict | None = None, tag: str = "") -> dict:
    """Train ``case`` in ``side``'s tree; {"rc", "out", "log", "maps"}."""
    dataset, flags = CASES[case]
    name = case + tag
    out, log = side["dir"] / "runs" / name, side["dir"] / "logs" / f"{name}.log"
    if dataset == "demo":
        data = ["--demo-dir", str(side["dir"] / "demo-data")]
    else:
        data = ["--data", str(tiny_data(side, python))]
    quiet = ["--no-progress"] if side["no_progress"] else []
    cmd = [python, "train.py", *flags, *data, "--out", str(out), *quiet]
    t0 = time.perf_counter()
    rc = run_logged(cmd, side["tree"], log, env)
    print(f"  {side['name']:<4} {name:<16} exit {rc}  {time.perf_counter() - t0:7.1f} s  {log}",
          flush=True)  # fmt: skip
    return {"rc": rc, "out": out, "log": log, "maps": final_maps(log.read_text())}


# ---- report -----------------------------------------------------------------------------------


def pair(maps: tuple[float, float] | None) -> str:
    """I2T/T2I as the table prints them, or "-" when the run printed none."""
    return "-" if maps is None else f"{maps[0]:.4f}/{maps[1]:.4f}"


def row(case: str, old: dict, new: dict, verdict: str) -> str:
    """One line of the final table."""
    return f"{case:<22} {pair(old['maps']):<15} {pair(new['maps']):<15} {verdict}"


def capability(python: str, env: dict | None) -> str:
    """What torch.backends.cpu.get_cpu_capability() prints under ``env``."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def isa_spread(new: dict, default_run: dict, python: str) -> str:
    """The demo case again in the NEW tree with AVX2 kernels; a row against the default run."""
    env = {**os.environ, **AVX2}
    variables = " ".join(f"{k}={v}" for k, v in AVX2.items())
    print(f"  cpu capability: default {capability(python, None)}, "
          f"with {variables}: {capability(python, env)}")  # fmt: skip
    avx2 = run_case(new, "demo", python, env, tag="-avx2")
    return row("demo: default vs avx2", default_run, avx2, compare_runs(default_run, avx2))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--old", default=DEFAULT_OLD, help=f"the revision before (default {DEFAULT_OLD})"
    )
    p.add_argument("--new", help="the revision after (default: the working tree)")
    p.add_argument("--out", type=Path, help="where the trees, runs and logs go (default: a new "
                   "temporary folder, kept)")  # fmt: skip
    p.add_argument("--only", nargs="+", metavar="CASE", help=f"cases to run: {', '.join(CASES)} "
                   "(default: all)")  # fmt: skip
    p.add_argument("--python", default=sys.executable, help="interpreter that runs train.py "
                   "(default: this one)")  # fmt: skip
    p.add_argument("--isa-spread", action="store_true", help="with the demo case: run it again "
                   "in the NEW tree with AVX2 kernels; report the difference (not in the exit "
                   "code)")  # fmt: skip
    return p.parse_args(argv)


def check_input(args: argparse.Namespace) -> str | None:
    """A one-line error for an unknown revision or case or a non-empty --out, else None."""
    for flag, rev in (("--old", args.old), ("--new", args.new)):
        if rev is not None and (error := check_revision(flag, rev)):
            return error
    unknown = [c for c in args.only or [] if c not in CASES]
    if unknown:
        return f"error: --only {' '.join(unknown)}: unknown case (known: {', '.join(CASES)})"
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        return f"error: --out {args.out}: not empty (name a new or empty folder)"
    return None


def prepare_side(name: str, rev: str | None, out: Path, python: str) -> dict:
    """One side of the comparison: its folder under ``out``, its tree, its train.py's flags."""
    side_dir = out / name
    tree = materialise(rev, side_dir)
    label = rev or f"working tree {REPO}"
    print(f"{name}: {label} -> {side_dir}", flush=True)
    return {"name": name, "dir": side_dir, "tree": tree,
            "no_progress": has_flag(python, tree, "--no-progress")}  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    error = check_input(args)
    if error:
        print(error, file=sys.stderr)
        return 2
    out = (args.out or Path(tempfile.mkdtemp(prefix="compare-behaviour-"))).resolve()
    t0 = time.perf_counter()
    old = prepare_side("old", args.old, out, args.python)
    new = prepare_side("new", args.new, out, args.python)
    rows, same = [], True
    for case in args.only or list(CASES):
        runs = [run_case(side, case, args.python) for side in (old, new)]
        verdict = compare_runs(*runs)
        same &= verdict.startswith("identical")
        rows.append(row(case, *runs, verdict))
        if case == "demo" and args.isa_spread:
            rows.append(isa_spread(new, runs[1], args.python))
    print(f"\n{'case':<22} {'old I2T/T2I':<15} {'new I2T/T2I':<15} verdict")
    print("\n".join(rows))
    print(f"\n{'all identical' if same else 'DIFFERENT'}; {time.perf_counter() - t0:.0f} s; "
          f"runs and logs in {out}")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
