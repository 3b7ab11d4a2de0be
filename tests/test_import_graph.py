"""The import graph of ``kdetheory`` has no cycle among module-level imports (issue 11).

The graph is read from the source with :mod:`ast` (nothing is imported): one node per module, one edge
per ``import`` / ``from ... import`` that names a module of the package. Imports at module level (including
inside a module-level ``if`` or ``try``) and imports inside functions or classes are kept apart: only the
first kind runs when the module is imported, so only a cycle among them makes the import order matter. A
function-level import is the sanctioned way to reach an optional or heavier module lazily. The parent
packages Python initialises before a submodule are not edges: an edge is what a statement names.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "kdetheory"
PACKAGE = "kdetheory"


def module_names(root=ROOT, package=PACKAGE):
    """``{dotted module name: path}`` for every ``.py`` file under ``root`` (a package's name for ``__init__``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package,) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(module, is_package, node):
    """The absolute name of ``from <node.module> import ...`` (relative levels resolved against ``module``)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(node, module, is_package, modules):
    """Modules of the package that one import statement loads by name."""
    if isinstance(node, ast.Import):
        found = set()
        for alias in node.names:
            name = alias.name
            while name and name not in modules:  # "import a.b.c" of a missing c loads a.b
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
        return found
    base = _resolve(module, is_package, node)
    found = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in modules:  # "from pkg import submodule"
            found.add(sub)
        elif base in modules:
            found.add(base)
    return found


def _walk(body, top_level):
    """(import node, at module level?) for every import under ``body``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, top_level
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            yield from _walk(ast.iter_child_nodes(node), False)
        else:  # if / try / with at module level still run at import time
            yield from _walk(ast.iter_child_nodes(node), top_level)


def import_graph(root=ROOT, package=PACKAGE):
    """``(top, inner)``: two ``{module: set of modules}`` graphs, module-level and function-level imports."""
    modules = module_names(root, package)
    top = {m: set() for m in modules}
    inner = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, at_top in _walk(tree.body, True):
            for target in _targets(node, module, is_package, modules) - {module}:
                (top if at_top else inner)[module].add(target)
    return top, inner


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycle_among_module_level_imports():
    top, _ = import_graph()
    assert cycles(top) == [], "module-level import cycles (break one edge, e.g. with a function-level import)"


def test_the_graph_sees_the_package():
    """The reader finds the modules and edges we know of, at the right level (it cannot pass by reading nothing)."""
    top, inner = import_graph()
    assert len(top) > 40
    assert "kdetheory._stream" in top["kdetheory.attention.exact"]  # from .._stream import ...
    assert "kdetheory._config" in top["kdetheory.attention.baselines.vattention"]  # from ... import _config
    assert "kdetheory.attention._blocks" in top["kdetheory.attention.practical"]  # from . import _blocks
    assert "kdetheory.attention.baselines" in top["kdetheory.attention"]  # from . import baselines
    assert "kdetheory.attention.exact" in inner["kdetheory.attention.kdeformer"]  # inside sampled_attention


@pytest.mark.parametrize("extra_edge, expected", [
    (("kdetheory._config", "kdetheory.attention.exact"),
     ["kdetheory._config", "kdetheory._stream", "kdetheory.attention.exact"]),
    (("kdetheory._rng", "kdetheory._rng"), []),  # a self-import is no cycle of two modules
])
def test_cycles_are_found(extra_edge, expected):
    """A planted back edge closes a cycle through the real graph, and the test reports it."""
    top, _ = import_graph()
    a, b = extra_edge
    top[a] = top[a] | {b}
    found = cycles(top)
    assert (expected in found) if expected else found == []


def test_function_level_imports_do_not_count(tmp_path):
    """A cycle closed only inside a function body is not reported; the same edge at module level is."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    top, inner = import_graph(pkg, "pkg")
    assert cycles(top) == [] and inner["pkg.b"] == {"pkg.a"}
    (pkg / "b.py").write_text("try:\n    from .a import x\nexcept ImportError:\n    pass\n")
    top, _ = import_graph(pkg, "pkg")
    assert cycles(top) == [["pkg.a", "pkg.b"]]
