"""Every test that compares the numbers of two code paths (marked ``compares``) must fail when
either tower gives one code to every item: run them with ``--constant-tower image`` and with
``--constant-tower text`` (tests/constant_tower/) and list any that still pass.

    python tests/check_constant_towers.py            # both towers; exit 1 if any test passed
    python tests/check_constant_towers.py -k parallel

Prints one row per test: its outcome with the image tower constant, then with the text tower.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def outcomes(tower: str, extra: list[str]) -> dict[str, str]:
    """{test id: passed | failed | skipped} of the `compares` tests with ``tower`` constant."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        argv = [sys.executable, "-m", "pytest", "-m", "compares", "--constant-tower", tower,
                f"--junitxml={report}", "-q", "-p", "no:cacheprovider", *extra]  # fmt: skip
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
        if not report.is_file():
            sys.exit(f"error: pytest wrote no report for --constant-tower {tower}")
        found = {}
        for case in ET.parse(report).iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            kinds = {child.tag for child in case}
            found[name] = (
                "failed" if kinds & {"failure", "error"} else
                "skipped" if "skipped" in kinds else "passed"
            )  # fmt: skip
        return found


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    image, text = outcomes("image", extra), outcomes("text", extra)
    if not image:
        print("error: no test is marked compares (or -k selected none)", file=sys.stderr)
        return 2
    width = max(len(name) for name in image)
    print(f"{'test':<{width}}  image constant  text constant")
    for name in sorted(image):
        print(f"{name:<{width}}  {image[name]:<14}  {text.get(name, 'not run')}")
    survivors = [n for n in image if image[n] == "passed" or text.get(n) == "passed"]
    if survivors:
        print(f"{len(survivors)} test(s) passed with a constant tower: {', '.join(survivors)}")
        return 1
    print(f"all {len(image)} comparison tests fail with either tower constant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
