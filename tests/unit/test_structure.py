"""The package's shape (issue 9): no import cycle, no module over 500 lines.

The import graph is built from the source's AST, not by importing it, so a
cycle that only bites at call time (a function-level import) is found too.

What counts as an edge ``A -> B`` (A and B modules of ``glsandbox_kernel``;
B may be a package, meaning its ``__init__.py``). The rule follows what the
interpreter executes when A's import statement runs:

- ``import a.b.c`` and ``from a.b.c import x`` run ``a/__init__``,
  ``a/b/__init__`` and ``a/b/c`` in turn, so each of them is an edge, except
  the packages that contain A itself: Python imports every parent package
  before it runs A's first line, so naming them again executes nothing.
- ``from a.b import x`` where ``a/b/x.py`` (or ``a/b/x/``) exists imports
  that submodule: an edge to ``a.b.x``. Where ``x`` is not a submodule it is a
  name ``a/b/__init__`` defines or re-exports, so A needs that ``__init__``
  to have run: an edge to ``a.b``, even when ``a.b`` contains A (that is the
  classic partially-initialised-package cycle).
- A package ``__init__`` that resolves names on first use (PEP 562
  ``__getattr__``) over a module-level literal ``_LAZY = {"Name": ".module"}``
  imports that module when ``from package import Name`` runs: an edge to
  ``package.module`` as well.
- Relative imports are resolved against A's package (A itself for an
  ``__init__.py``).
- Imports anywhere in the file count: module level, inside functions
  (lazy imports still tie the two layers together), inside ``try``.
- Imports under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) do not:
  they never run.
- ``importlib.import_module("...")`` and ``__import__("...")`` with a literal
  name count like ``import``; a computed name cannot be followed, so the
  package names the modules it imports (the CLI's subcommands are plain
  imports for that reason); entry points are data, not edges.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "glsandbox_kernel"
PKG_DIR = os.path.join(ROOT, PACKAGE)
MAX_LINES = 500

# Known offenders whose files other helpers are changing on their own branches in
# this round (cycles as the set of modules that form them, sizes as the module).
# The test tolerates exactly these; it fails when one is fixed (so the entry goes)
# or when anything else appears. The lead empties this set after merging.
PENDING_ON_OTHER_BRANCHES: set[frozenset[str] | str] = set()


@dataclass(frozen=True)
class Edge:
    """One import of ``target`` by ``source`` at ``line``."""

    source: str
    target: str
    line: int


def short(module: str) -> str:
    """``glsandbox_kernel.a.b`` -> ``a.b`` (the package itself stays as is)."""
    return module[len(PACKAGE) + 1 :] if module.startswith(PACKAGE + ".") else module


def discover() -> dict[str, str]:
    """Every module of the package: dotted name -> file path."""
    modules: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(PKG_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, ROOT).split(os.sep)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            parts = rel if name == "__init__.py" else [*rel, name[:-3]]
            modules[".".join(parts)] = os.path.join(dirpath, name)
    return modules


#: calls that import the module named by their first argument (counted when it is a literal)
_DYNAMIC = ("import_module", "__import__")


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom | ast.Call]:
    """Import statements and literal ``import_module``/``__import__`` calls, skipping
    ``if TYPE_CHECKING:`` bodies (their ``else:`` branch does run)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) in _DYNAMIC
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _chain(dotted: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: what ``import a.b.c`` executes, in order."""
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def lazy_names(path: str) -> dict[str, str]:
    """``Name -> module`` of a package ``__init__``'s literal ``_LAZY`` table (``{}`` without one)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "_LAZY" and isinstance(value, ast.Dict):
            return {
                k.value: v.value
                for k, v in zip(value.keys, value.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
            }
    return {}


def _resolve(spec: str, package: str) -> str:
    """``.module`` / ``..module`` relative to ``package`` (an absolute name as is)."""
    level = len(spec) - len(spec.lstrip("."))
    if not level:
        return spec
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([spec[level:]] if spec[level:] else [])])


def edges_of(
    module: str, path: str, modules: dict[str, str], lazy: dict[str, dict[str, str]] | None = None
) -> list[Edge]:
    """The edges leaving ``module`` by the rule in this file's docstring; ``lazy``: each
    package's :func:`lazy_names`."""
    lazy = lazy or {}
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    is_pkg = os.path.basename(path) == "__init__.py"
    own_pkg = module if is_pkg else module.rpartition(".")[0]
    ancestors = set(_chain(module)[:-1]) | ({module} if is_pkg else set())
    out: set[Edge] = set()

    def executes(dotted: str, line: int) -> None:
        for mod in _chain(dotted):
            if mod in modules and mod not in ancestors and mod != module:
                out.add(Edge(module, mod, line))

    for node in _imports(tree):
        if isinstance(node, ast.Call):
            assert isinstance(node.args[0], ast.Constant)
            executes(str(node.args[0].value), node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                executes(alias.name, node.lineno)
        else:
            if node.level:
                base = own_pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                parent = ".".join([*base, *([node.module] if node.module else [])])
            else:
                parent = node.module or ""
            if parent != PACKAGE and not parent.startswith(PACKAGE + "."):
                continue
            executes(parent, node.lineno)
            for alias in node.names:
                sub = f"{parent}.{alias.name}"
                if sub in modules:
                    executes(sub, node.lineno)
                elif parent in modules and parent != module:
                    # a name the package's __init__ defines: needed even from inside it
                    out.add(Edge(module, parent, node.lineno))
                    where = lazy.get(parent, {}).get(alias.name)
                    if where is not None:
                        executes(_resolve(where, parent), node.lineno)
    return sorted(out, key=lambda e: (e.target, e.line))


def import_graph() -> dict[str, list[Edge]]:
    """Module -> its outgoing edges, for the whole package."""
    modules = discover()
    lazy = {mod: lazy_names(path) for mod, path in modules.items() if path.endswith("__init__.py")}
    return {mod: edges_of(mod, path, modules, lazy) for mod, path in modules.items()}


def strongly_connected(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = [e.target for e in graph[node]]
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def describe(component: list[str], graph: dict[str, list[Edge]]) -> str:
    """One cycle through ``component`` (a shortest one back to its first module),
    each step as ``module:line`` of the import that makes it, plus the component."""
    members = set(component)
    start = component[0]
    # breadth-first from start's successors back to start, inside the component
    prev: dict[str, Edge] = {}
    frontier = [start]
    while frontier and start not in prev:
        nxt: list[str] = []
        for node in frontier:
            for e in graph[node]:
                if e.target in members and e.target not in prev:
                    prev[e.target] = e
                    nxt.append(e.target)
        frontier = nxt
    steps: list[Edge] = []
    node = start
    while True:
        e = prev[node]
        steps.append(e)
        node = e.source
        if node == start:
            break
    steps.reverse()
    path = " -> ".join(f"{short(e.source)}:{e.line}" for e in steps) + f" -> {short(start)}"
    return f"{len(component)} modules [{', '.join(short(m) for m in component)}]: {path}"


def cycles() -> dict[frozenset[str], str]:
    """Every import cycle: its modules (short names) -> a readable description."""
    graph = import_graph()
    return {frozenset(short(m) for m in comp): describe(comp, graph) for comp in strongly_connected(graph)}


def oversized() -> dict[str, int]:
    """Modules (short names) over MAX_LINES lines -> their line count."""
    out = {}
    for mod, path in discover().items():
        with open(path, encoding="utf-8") as fh:
            n = sum(1 for _ in fh)
        if n > MAX_LINES:
            out[short(mod)] = n
    return out


# ---------------------------------------------------------------------------
# the rule itself, on a small package written for the test


def _write(tmp: str, files: dict[str, str]) -> dict[str, str]:
    modules = {}
    for rel, text in files.items():
        path = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        parts = rel[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def test_edge_rule_follows_what_python_executes(tmp_path: os.PathLike[str]) -> None:
    """Each clause of the rule, on a package laid out for it."""
    p = PACKAGE
    modules = _write(
        str(tmp_path),
        {
            f"{p}/__init__.py": "from .a import A\n",
            f"{p}/a.py": "from . import b\nfrom glsandbox_kernel import Top\n",
            f"{p}/b.py": "import glsandbox_kernel.sub.c\n",
            f"{p}/sub/__init__.py": "from .c import C\n",
            f"{p}/sub/c.py": (
                "from typing import TYPE_CHECKING\n"
                "from . import C2\n"
                "from .. import a\n"
                "if TYPE_CHECKING:\n    from glsandbox_kernel import b\n"
                "else:\n    import os\n"
                "def lazy():\n    from ..b import x\n"
                "    importlib.import_module('glsandbox_kernel.sub.d')\n"
                "    __import__(name)\n"
            ),
            f"{p}/sub/d.py": "",
            f"{p}/lazy/__init__.py": "_LAZY = {'Late': '.late'}\ndef __getattr__(name): ...\n",
            f"{p}/lazy/late.py": "",
            f"{p}/user.py": "from glsandbox_kernel.lazy import Late\n",
        },
    )
    lazy = {m: lazy_names(path) for m, path in modules.items() if path.endswith("__init__.py")}
    assert lazy[f"{p}.lazy"] == {"Late": ".late"}
    got = {m: {e.target for e in edges_of(m, path, modules, lazy)} for m, path in modules.items()}
    # a name the package resolves on first use through _LAZY: its __init__ and the module
    assert got[f"{p}.user"] == {f"{p}.lazy", f"{p}.lazy.late"}
    assert got[p] == {f"{p}.a"}
    # `from . import b`: a submodule; `from glsandbox_kernel import Top`: a name of the
    # package's own __init__, which a needs to have run
    assert got[f"{p}.a"] == {f"{p}.b", p}
    # `import glsandbox_kernel.sub.c` runs sub/__init__ first; the top package is b's own
    assert got[f"{p}.b"] == {f"{p}.sub", f"{p}.sub.c"}
    assert got[f"{p}.sub"] == {f"{p}.sub.c"}
    # a name from its own package's __init__, a sibling package's module, a lazy
    # import and a literal import_module; the TYPE_CHECKING import is not an edge
    assert got[f"{p}.sub.c"] == {f"{p}.sub", f"{p}.a", f"{p}.b", f"{p}.sub.d"}
    graph = {m: edges_of(m, path, modules, lazy) for m, path in modules.items()}
    comps = strongly_connected(graph)
    assert comps == [sorted([p, f"{p}.a", f"{p}.b", f"{p}.sub", f"{p}.sub.c"])]
    assert describe(comps[0], graph).endswith(": glsandbox_kernel:1 -> a:2 -> glsandbox_kernel")


# ---------------------------------------------------------------------------
# the package


def test_no_import_cycle() -> None:
    """No cycle in glsandbox_kernel's import graph, except those pending elsewhere."""
    found = cycles()
    unexpected = [
        text
        for comp, text in sorted(found.items(), key=lambda kv: sorted(kv[0]))
        if comp not in PENDING_ON_OTHER_BRANCHES
    ]
    assert not unexpected, "import cycles:\n" + "\n".join(unexpected)


def test_audit_layer_imports_nothing_above_it() -> None:
    """``audit/`` (records, chain, sinks, verification) imports only itself and the errors:
    ``glsandbox audit verify`` checks every file without the engine, notebooks or Dask."""
    # hostloop: the one shared host thread (stdlib only, imports nothing of ours) that seals records;
    # terminal_text: the one escaping of untrusted text a CLI prints (stdlib only, checked below)
    allowed = {"audit", "exceptions", "hostloop", "terminal_text"}
    graph = import_graph()
    leaves = [
        f"{short(m)} -> {short(e.target)}" for m in graph if short(m) in {"hostloop", "terminal_text"} for e in graph[m]
    ]
    assert not leaves, "audit/'s leaf modules import more of the package: " + ", ".join(leaves)
    bad = [
        f"{short(e.source)}:{e.line} -> {short(e.target)}"
        for mod, edges in graph.items()
        if short(mod).split(".")[0] == "audit"
        for e in edges
        if short(e.target).split(".")[0] not in allowed
    ]
    assert not bad, "audit/ reaches into other layers: " + ", ".join(bad)


def test_no_module_over_500_lines() -> None:
    """Every module of the package is at most MAX_LINES lines long."""
    big = {m: n for m, n in oversized().items() if m not in PENDING_ON_OTHER_BRANCHES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_pending_list_is_current() -> None:
    """Each entry of PENDING_ON_OTHER_BRANCHES is still an offender: once its branch
    is merged and the cycle or size is gone, the entry has to go too."""
    offenders: set[frozenset[str] | str] = set(cycles()) | set(oversized())
    stale = [entry for entry in PENDING_ON_OTHER_BRANCHES if entry not in offenders]
    if stale:
        pytest.fail(f"fixed, remove from PENDING_ON_OTHER_BRANCHES: {sorted(map(str, stale))}")
