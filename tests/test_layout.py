"""The layout: the root shows the project's face; the cmh package never imports a root module;
no import circle anywhere (module-level and function-level imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT_MODULES = {"data", "evaluate", "loss", "models", "retrieve", "train"}


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (``from a.b import c`` -> a.b and,
    when a.b is the package, a.b.c), at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def our_modules() -> dict[str, Path]:
    mods = {p.stem: p for p in REPO.glob("*.py")}
    for path in (REPO / "cmh").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = our_modules()
    return {name: (imported_modules(path) & set(mods)) - {name} for name, path in mods.items()}


def test_the_root_holds_exactly_the_face_of_the_project():
    assert {p.stem for p in REPO.glob("*.py")} == ROOT_MODULES
    for folder in ("cmh", "scripts", "bench", "tests", "docs", ".ci"):
        assert (REPO / folder).is_dir(), folder


def test_no_package_module_imports_a_root_module():
    graph = import_graph()
    offenders = {
        m: sorted(deps & ROOT_MODULES) for m, deps in graph.items() if m.startswith("cmh.")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_graph_check_sees_a_root_import():
    """The check above can fail: a package module that imports data.py is reported."""
    bad = ast.parse("def f():\n    from data import load_prepared\n")
    names = {n.module for n in ast.walk(bad) if isinstance(n, ast.ImportFrom)}
    assert names & ROOT_MODULES == {"data"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle():
    assert find_cycle(import_graph()) is None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def code_lines(node: ast.FunctionDef) -> int:
    """Lines of a function without its docstring."""
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    doc = body[0].end_lineno - body[0].lineno + 1 if has_doc and len(body) > 1 else 0
    return node.end_lineno - node.lineno + 1 - doc


def test_modules_and_functions_stay_short():
    """~400 lines a module, ~60 lines of code a function."""
    long_modules, long_functions = [], []
    for name, path in our_modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 420:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and code_lines(node) > 62:
                long_functions.append(f"{name}.{node.name}")
    assert long_modules == [] and long_functions == []


# ------------------------------------------------------------------ the package's shape
ENTRY_POINTS = {"train", "evaluate", "retrieve", "data"}


def test_no_module_is_left_loose_in_the_package():
    """`ls cmh/*.py` prints only cmh/__init__.py: every module sits in a sub-package."""
    assert sorted(p.name for p in (REPO / "cmh").glob("*.py")) == ["__init__.py"]


def listed_names(init: Path) -> list[str]:
    """The names an ``__init__`` docstring lists: the first word of each indented line
    (a sub-package written NAME/)."""
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")), clean=False) or ""
    return [line.split()[0].rstrip("/") for line in doc.splitlines() if line.startswith("    ")]


def packages() -> list[Path]:
    return sorted(p.parent for p in (REPO / "cmh").rglob("__init__.py"))


@pytest.mark.parametrize("package", packages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_package_lists_its_modules_one_line_each(package):
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    subpackages = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    listed = listed_names(package / "__init__.py")
    assert sorted(listed) == sorted(modules | subpackages)
    assert len(listed) == len(set(listed))


def test_the_listing_check_sees_a_missing_module(tmp_path):
    (tmp_path / "__init__.py").write_text('"""pkg.\n\n    a   the a module\n"""\n')
    assert listed_names(tmp_path / "__init__.py") == ["a"]


def script_files() -> list[Path]:
    return sorted([*(REPO / "scripts").glob("*.py"), *(REPO / "bench").glob("*.py")])


def test_no_sys_path_edit_in_scripts_or_bench():
    """scripts/ and bench/ import the installed package (requirements.txt ends with -e .)."""
    offenders = [str(p.relative_to(REPO)) for p in script_files() if uses_sys_path(p.read_text())]
    assert offenders == []


def uses_sys_path(source: str) -> bool:
    """Code (not a docstring) that touches sys.path."""
    return any(
        isinstance(n, ast.Attribute) and n.attr == "path" and getattr(n.value, "id", "") == "sys"
        for n in ast.walk(ast.parse(source))
    )


def test_the_sys_path_check_sees_an_edit():
    assert uses_sys_path("import sys\nsys.path.insert(0, '..')\n")
    assert not uses_sys_path('"""the folder comes first on sys.path"""\n')


def is_entry_point(path: Path) -> bool:
    """A file run as a program: the root's entry points, or a script with a __main__ block."""
    if path.parent == REPO:
        return path.stem in ENTRY_POINTS
    return 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")


def test_no_entry_point_is_imported_by_another_module():
    """train.py, evaluate.py, retrieve.py, data.py and every script of scripts/ and bench/ import
    the package, never each other (they run one another as child processes). Tests may import
    an entry point to call its main(argv)."""
    files = [*REPO.glob("*.py"), *script_files(), *(REPO / "cmh").rglob("*.py")]
    entry = {p.stem for p in files if is_entry_point(p)}
    entry |= {f"{p.parent.name}.{p.stem}" for p in script_files() if is_entry_point(p)}
    offenders = {
        str(p.relative_to(REPO)): sorted(imported_modules(p) & entry)
        for p in files
        if imported_modules(p) & entry
    }
    assert offenders == {}


def test_the_entry_point_check_sees_an_import():
    assert imported_modules_of("import train\n") & ENTRY_POINTS == {"train"}
    assert "scripts.seed_results" in imported_modules_of("def f():\n    from scripts.seed_results import x\n")
    assert imported_modules_of("def f():\n    from evaluate import x\n") & ENTRY_POINTS == {
        "evaluate"
    }


def imported_modules_of(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_library_code_never_reads_the_argparse_namespace():
    """No ``getattr(args`` in cmh/: library code takes the typed configuration (every field
    present: cmh/config/typed.py) or explicit parameters."""
    offenders = [
        f"{p.relative_to(REPO)}:{node.lineno}"
        for p in sorted((REPO / "cmh").rglob("*.py"))
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
        and node.args
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == "args"
    ]
    assert offenders == []  # (read as code: a call split over lines is found too)


def test_tests_mirror_the_package():
    """Every test module sits in a folder named after a sub-package of cmh/ (or docs, scripts,
    bench); only the layout test itself stays at tests/."""
    folders = {p.name for p in (REPO / "cmh").iterdir() if (p / "__init__.py").is_file()}
    folders |= {"docs", "scripts", "bench"}
    misplaced = [
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
        if p.parent.name not in folders and p.name != "test_layout.py"
    ]
    assert misplaced == []
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), "test file names must be unique (pytest rootdir mode)"
