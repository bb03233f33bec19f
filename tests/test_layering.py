"""effkit's import structure: no cycles between modules, no private names imported across modules.

Every ``import`` / ``from ... import`` in effkit, at module level or inside a function, is an edge
from the importing module to the imported one. A package's ``__init__`` is never an edge target:
re-exports there are not a cycle of ideas. ``from .quant import x`` is an edge to ``quant.x`` when
that is a module, otherwise an import of the package ``quant`` (no edge). Only the files are read
(``ast``); nothing is imported, so a broken module is reported here as what it imports.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Module(NamedTuple):
    path: Path
    is_package: bool  # an __init__.py


class Layering(NamedTuple):
    modules: dict[str, Module]
    edges: dict[str, set[str]]  # importer -> imported modules (packages left out)
    private: list[tuple[str, str, str]]  # (importer, module, _name)

    def cycles(self) -> list[list[str]]:
        return import_cycles(self.edges)


def find_modules(package_dir: Path) -> dict[str, Module]:
    """Dotted name -> file for every .py under ``package_dir`` (``effkit/quant/__init__.py`` is
    ``effkit.quant``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = Module(path, is_package)
    return modules


def imported(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom,
             modules: dict[str, Module]) -> list[tuple[str, str | None]]:
    """(module, name) pairs that ``node`` in ``importer`` imports; name is None for ``import x``."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    if node.level:  # relative: `from . import x` in a package's __init__ is relative to itself
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    pairs = []
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        pairs.append((submodule if submodule in modules else source, alias.name))
    return pairs


def layering(package_dir: Path) -> Layering:
    """The import graph of the package in ``package_dir`` and its cross-module private imports."""
    modules = find_modules(package_dir)
    top = package_dir.name
    edges: dict[str, set[str]] = {}
    private = []
    for name, module in modules.items():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        for node in ast.walk(tree):  # module level and inside functions alike
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, what in imported(name, module.is_package, node, modules):
                if not target.startswith(top) or target not in modules or target == name:
                    continue
                if modules[target].is_package:  # a package's __init__: not an edge
                    continue
                if what and what.startswith("_") and not what.startswith("__"):
                    private.append((name, target, what))
                edges.setdefault(name, set()).add(target)
    return Layering(modules, edges, private)


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    nodes = set(edges) | {w for targets in edges.values() for w in targets}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(found)


def cycle_path(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest import loop through the first module of ``component``: [a, b, ..., a]."""
    start = component[0]
    inside = set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges.get(v, ())):
            if w == start:
                return paths[v] + [start]
            if w in inside and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"{component} is not a cycle")


def describe_cycles(result: Layering) -> list[str]:
    return [f"cycle: {' <-> '.join(c)} (for instance {' -> '.join(cycle_path(result.edges, c))})"
            for c in result.cycles()]


def describe_private(result: Layering) -> list[str]:
    return [f"private: {importer} imports {module}.{name}"
            for importer, module, name in result.private]


# ---------------------------------------------------------------- effkit itself
def test_effkit_has_no_import_cycles():
    result = layering(ROOT / "effkit")
    assert len(result.modules) > 10 and result.edges, "effkit's modules were not found"
    found = describe_cycles(result)
    assert not found, ("effkit's modules import each other in a cycle; move the shared code "
                       "into a lower module:\n" + "\n".join(found))


def test_effkit_imports_no_private_names_across_modules():
    found = describe_private(layering(ROOT / "effkit"))
    assert not found, ("a _private name is used outside its module; make it public (no leading "
                       "underscore) or move it:\n" + "\n".join(found))


# ---------------------------------------------------------------- the checker itself
def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_finds_a_cycle_and_a_private_import(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "from .a import run\n",
        "pkg/a.py": "from .b import helper\n\ndef run():\n    return helper()\n",
        # the cycle closes inside a function, by an absolute import
        "pkg/b.py": "def helper():\n    from pkg.c import value\n    return value\n\n"
                    "def _helper():\n    return 1\n",
        "pkg/c.py": "import pkg.a\nvalue = 1\n",
        # a private name imported from another module; and a subpackage re-export
        "pkg/d.py": "from .b import _helper, helper\nfrom .sub import leaf, thing\n",
        "pkg/sub/__init__.py": "from .leaf import thing\nfrom .. import d\n",
        "pkg/sub/leaf.py": "thing = 1\n",
        "pkg/e.py": "from . import __version__\nimport os\nfrom os.path import join as _join\n",
    })
    result = layering(package)
    assert set(result.modules) == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e",
                                   "pkg.sub", "pkg.sub.leaf"}
    assert result.edges == {
        "pkg": {"pkg.a"},  # an __init__ imports like any module; it is only never a target
        "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"},
        "pkg.d": {"pkg.b", "pkg.sub.leaf"},  # `thing` from the package sub: no edge
        "pkg.sub": {"pkg.sub.leaf", "pkg.d"},  # a package's own imports do count
    }
    assert result.cycles() == [["pkg.a", "pkg.b", "pkg.c"]]
    assert describe_cycles(result) == [
        "cycle: pkg.a <-> pkg.b <-> pkg.c (for instance pkg.a -> pkg.b -> pkg.c -> pkg.a)"]
    # os.path's `_join` is not an import from the package
    assert describe_private(result) == ["private: pkg.d imports pkg.b._helper"]


def test_checker_passes_a_clean_package(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "from .low import base\nfrom .high import top\n",
        "pkg/low.py": "def base():\n    return 1\n",
        "pkg/high.py": "from .low import base\n\ndef top():\n    from pkg import low\n"
                       "    return base() + low.base()\n",
    })
    result = layering(package)
    assert result.edges == {"pkg": {"pkg.low", "pkg.high"}, "pkg.high": {"pkg.low"}}
    assert result.cycles() == [] and result.private == []
