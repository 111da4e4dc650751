"""The layout holds: no import cycles, layers only import downwards, the core stays pure.

The import graph is read from the source with `ast`, so it sees every import a module can run,
including the ones inside functions (a lazy import is how a cycle hides). Imports under
`if TYPE_CHECKING:` are left out: they never run. The layers are the ones docs/architecture.md
draws; a new package needs a line in `LAYERS` and in that document.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Unit -> layer. A module may import its own unit and any unit of a strictly lower layer.
LAYERS: dict[str, int] = {
    "controller": 0,  # the package root: __version__
    "controller.clock": 0,
    "controller.errors": 0,
    "controller.logs": 0,
    "controller.files": 0,
    "controller.serving": 0,
    "controller.platform": 1,
    "policies": 2,
    "controller.core": 3,
    "controller.cost": 3,
    "controller.settings": 4,
    "controller.emulator": 4,
    "controller.daemon": 5,
    "controller.backtest": 6,
    "controller.cli": 7,
}

# What a pure core must never pull in, directly or through what it imports.
IO_MODULES = (
    "httpx",
    "aiohttp",
    "sqlite3",
    "starlette",
    "uvicorn",
    "yaml",
    "prometheus_client",
    "structlog",
    "controller.settings",
    "controller.platform.client",
    "controller.platform.scrape",
    "controller.daemon",
    "controller.cost",
    "controller.backtest",
    "controller.emulator",
    "controller.cli",
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, known: set[str]) -> set[str]:
    """Modules of `known` that this tree can import at run time."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known:
                    found.add(a.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in known}


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the modules it imports, for every module under `root`/`packages`."""
    files = {
        _module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
    }
    known = set(files)
    return {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), known) - {name}
        for name, path in files.items()
    }


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def unit_of(module: str) -> str:
    """The longest `LAYERS` key that is `module` or a package holding it."""
    best = ""
    for unit in LAYERS:
        if (module == unit or module.startswith(unit + ".")) and len(unit) > len(best):
            best = unit
    if not best:
        raise AssertionError(f"{module} belongs to no unit of LAYERS (add it, and to the docs)")
    return best


def unit_graph(graph: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        u = unit_of(mod)
        out.setdefault(u, set()).update(unit_of(d) for d in deps if unit_of(d) != u)
    return out


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(graph.items()):
        u = unit_of(mod)
        for d in sorted(deps):
            v = unit_of(d)
            if v != u and LAYERS[v] >= LAYERS[u]:
                bad.append(f"{mod} (layer {LAYERS[u]}) imports {d} (layer {LAYERS[v]})")
    return bad


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, ("controller", "policies"))


def test_no_module_import_cycles(graph):
    """No two modules import each other, directly or around a loop, even lazily."""
    assert cycles(graph) == []


def test_no_package_import_cycles(graph):
    """The subsystem packages form a DAG: none reaches back to one that imports it."""
    assert cycles(unit_graph(graph)) == []


def test_layers_only_import_downwards(graph):
    """Every import goes to the module's own unit or to a lower layer of docs/architecture.md."""
    assert layer_violations(graph) == []


def test_only_the_cli_imports_the_cli(graph):
    """The command line is the top: nothing outside `controller.cli` imports it."""
    offenders = [
        f"{m} -> {d}"
        for m, deps in graph.items()
        if not m.startswith("controller.cli")
        for d in deps
        if d == "controller.cli" or d.startswith("controller.cli.")
    ]
    assert offenders == []


def test_core_imports_nothing_with_io():
    """Importing the decision core (and the policies it calls) loads no network, file, database
    or exposition library, nor the subsystems that use them."""
    code = "import sys, controller.core, policies.base; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    loaded = [m for m in out for bad in IO_MODULES if m == bad or m.startswith(bad + ".")]
    assert loaded == []


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for rel, body in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(body))
    return tmp_path


def test_a_planted_lazy_cycle_is_found(tmp_path):
    """The checker is not vacuous: a cycle through a function-level import is reported, and one
    through a TYPE_CHECKING import is not (it never runs)."""
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import thing\n",
            "pkg/b.py": "def thing():\n    from pkg.a import x\n    return x\n",
            "pkg/c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import y\n"
            ),
            "pkg/d.py": "from pkg.c import z\n",
        },
    )
    assert cycles(import_graph(root, ("pkg",))) == [["pkg.a", "pkg.b"]]


def test_the_real_tree_with_a_planted_cycle_fails(graph):
    """Adding `controller.platform.models -> controller.daemon.loop` to the real graph makes both
    the cycle check and the layer check fail."""
    planted = {k: set(v) for k, v in graph.items()}
    planted["controller.platform.models"].add("controller.daemon.loop")
    assert cycles(planted) != []
    assert cycles(unit_graph(planted)) != []
    assert any("controller.platform.models" in v for v in layer_violations(planted))
