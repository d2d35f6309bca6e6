"""The README and docs/*.md point at things that exist: every relative link (and its #anchor),
every repository file they name (cmh/..., scripts/..., bench/..., tests/...)."""

from __future__ import annotations

import re

from doc_demo import PAGES, ROOT, page_name

LINK = re.compile(r"\]\(([^)\s]+)\)")
FILE = re.compile(r"(?<![\w/.])((?:cmh|scripts|bench|tests)/[\w/]*\w\.(?:py|sh))\b")


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces -> '-'."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_relative_links_and_anchors_resolve():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # an outside address
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page_name(page)}: link to {target} (no such file)"
            if anchor and file.suffix == ".md":
                assert anchor in anchors(file.read_text(encoding="utf-8")), (
                    f"{page_name(page)}: link to {target} (no such heading)"
                )


def test_named_repository_files_exist():
    missing = []
    for page in PAGES:
        for path in sorted(set(FILE.findall(page.read_text(encoding="utf-8")))):
            if not (ROOT / path).exists():
                missing.append(f"{page_name(page)}: {path}")
    assert not missing, "named on a page but not in the repository:\n" + "\n".join(missing)


def test_no_page_links_to_the_retired_files():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for old in ("BENCHMARKS.md", "docs/dcmh.md", "dcmh.md)"):
            assert old not in text, f"{page_name(page)} still names {old}"


def test_the_layout_page_names_the_modules_that_exist():
    """docs/layout.md's table of cmh/ sub-packages: every module it names is there, and every
    module there is named."""
    rows = [
        r for r in (ROOT / "docs/layout.md").read_text().splitlines() if r.startswith("| `cmh/")
    ]
    assert len(rows) >= 10
    named = set()
    for row in rows:
        folder = re.match(r"^\| `(cmh/[\w/]+/)`", row).group(1)
        modules = re.findall(r"(?<!was )`(\w+\.py)`", row.split("|")[2])
        assert modules, row[:60]
        named |= {folder + m for m in modules}
    for path in sorted(named):
        assert (ROOT / path).is_file(), f"docs/layout.md names {path}, which does not exist"
    actual = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "cmh").glob("*/**/*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    }
    assert not actual - named, f"modules docs/layout.md does not name: {sorted(actual - named)}"
