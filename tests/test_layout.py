"""The layout: the root shows the project's face; the cmh package never imports a root module;
no import circle anywhere (module-level and function-level imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

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
    mods |= {f"cmh.{p.stem}": p for p in (REPO / "cmh").glob("*.py") if p.stem != "__init__"}
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = our_modules()
    return {name: imported_modules(path) & set(mods) for name, path in mods.items()}


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
