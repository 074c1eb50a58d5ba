"""The layering rule of ``docs/architecture.md``, checked on the source (issue 20).

The package is cut into *units*: each subpackage or top-level module of ``distillguard``
(``store``, ``gateway``, ``errors``, ...; the root ``distillguard/__init__.py`` is the unit
``distillguard``), or a module of one where :data:`LAYERS` names it (``app.operations``): a
module belongs to the longest unit that prefixes it. :data:`LAYERS` lists them from the bottom
up. Read from every ``import`` and ``from ... import`` in the source (at module level, inside
functions and under ``TYPE_CHECKING``: a type-only import is still a dependency) and from
``importlib.import_module("distillguard...")`` calls with a literal name, the rules are:

1. **down only**: a unit imports only units of strictly lower layers; units of one layer are
   independent of one another (no sideways imports between packages);
2. **no cycles**: no module reaches itself through imports (in particular no two modules import
   each other), within a package as across packages;
3. **faces only**: from outside a package, a module imports that package's public modules, never
   a private one (``pkg._x``); ``distillguard._internal`` is shared by the whole distribution.

Today's breaches are listed in :data:`ALLOWED`, each with the reason and who is removing it. The
list can only shrink: the test also fails when an allowed edge no longer exists, or exists but
breaks no rule any more (its cycle was cut elsewhere), so whoever removes a breach removes its
line here. A new top-level unit must be given a layer.

Misfires: imports built at run time from non-literal strings (``importlib.import_module(name)``,
``__import__``), entry points and plugins are invisible to it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = SRC / "distillguard"

#: Units from the bottom layer up. Units in one tuple are independent of one another.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),  # the error tree
    ("_internal",),  # shared helpers (extras: the error naming a missing extra)
    ("distillguard",),  # the version; installs the import hook of _internal.extras
    ("config",),
    ("keyring",),
    ("records", "results"),  # formats: exchange logs; scan/radioactivity/attribution results
    ("store",),
    # domain: components that build on the store and the formats
    ("ledger", "passport", "watermark", "image", "fingerprint", "monitor", "sim", "testing"),
    (
        "privacy",
        "video",
        "radioactivity",
    ),  # privacy erases through the ledger; video frames are images
    ("provenance",),  # one check for any file: text, image and video watermarks, C2PA
    ("evidence",),
    ("gateway",),  # the HTTP service (request pipeline, upstreams, limits, scoring)
    # the application layer (helper A's plan): services every door calls, ...
    ("app.operations", "app.ingest"),
    # ... the doors over them: the analyst console and the /admin API, ...
    ("console", "app.admin"),
    ("app",),  # ... and the composition that wires everything once (app.server)
    ("cli",),
)

#: Known breaches (importer module, imported module) -> why it is there and who removes it.
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        # sim/zoo is evaluation data kept apart from the code: not read here
        if path.relative_to(PACKAGE).parts[:2] == ("sim", "zoo"):
            continue
        yield path


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in _source_files()}


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The distillguard modules that ``module`` imports (a name imported from a package counts as
    its submodule when there is one, else as the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "distillguard")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] != "distillguard":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith("distillguard")
        ):
            found.add(node.args[0].value)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imported(name, path, known) for name, path in modules.items()}


_DECLARED = {unit for layer in LAYERS for unit in layer}


def _unit(module: str) -> str:
    """The longest declared unit that prefixes ``module`` (else its top-level part)."""
    parts = module.split(".")[1:]
    for end in range(len(parts), 1, -1):
        candidate = ".".join(parts[:end])
        if candidate in _DECLARED:
            return candidate
    return parts[0] if parts else module


def _layer_of() -> dict[str, int]:
    return {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


GRAPH = _graph()
EDGES = {(a, b) for a, targets in GRAPH.items() for b in targets}
CHECKED = {a: {b for b in targets if (a, b) not in ALLOWED} for a, targets in GRAPH.items()}


def test_the_graph_is_read() -> None:
    # a sanity check that the walk and the import reader work: known real edges are found
    assert "distillguard.store" in GRAPH
    assert "distillguard.errors" in GRAPH["distillguard.config"]
    assert len(EDGES) > 200


def test_every_unit_has_a_layer() -> None:
    layer_of = _layer_of()
    units = {_unit(m) for m in GRAPH}
    missing = sorted(units - set(layer_of))
    assert not missing, f"units without a layer in LAYERS (add them): {missing}"
    declared = [u for layer in LAYERS for u in layer]
    assert len(declared) == len(set(declared)), "a unit is in two layers"


def test_imports_point_down_only() -> None:
    layer_of = _layer_of()
    bad: list[str] = []
    for importer, targets in sorted(CHECKED.items()):
        for target in sorted(targets):
            a, b = _unit(importer), _unit(target)
            if a == b or a not in layer_of or b not in layer_of:
                continue
            if layer_of[b] >= layer_of[a]:
                how = "sideways" if layer_of[b] == layer_of[a] else "up"
                bad.append(
                    f"{importer} -> {target} ({how}: {a} is in layer {layer_of[a]}, "
                    f"{b} in layer {layer_of[b]})"
                )
    assert not bad, "imports that break the layers:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
    assert sorted(_cycles(graph)) == [["a", "b", "c"], ["e", "f"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others() -> None:
    cycles = _cycles(CHECKED)
    described = []
    for component in cycles:
        members = set(component)
        inner = sorted(f"{a} -> {b}" for a in component for b in CHECKED[a] if b in members)
        described.append("cycle: " + "; ".join(inner))
    assert not cycles, "modules that import each other:\n" + "\n".join(described)


def test_private_modules_are_imported_only_from_their_package() -> None:
    bad: list[str] = []
    for importer, targets in sorted(CHECKED.items()):
        for target in sorted(targets):
            parts = target.split(".")
            for depth in range(2, len(parts)):
                if parts[depth].startswith("_"):
                    owner = ".".join(parts[:depth])
                    if not (importer == owner or importer.startswith(owner + ".")):
                        bad.append(f"{importer} -> {target} (private to {owner})")
                    break
    assert not bad, "imports of another package's private module:\n" + "\n".join(bad)


def test_the_allow_list_only_shrinks() -> None:
    stale = sorted(f"{a} -> {b}" for a, b in ALLOWED if (a, b) not in EDGES)
    assert not stale, (
        "these allowed breaches are gone: remove their lines from ALLOWED in "
        "tests/unit/test_layering.py:\n" + "\n".join(stale)
    )


def test_the_architecture_page_names_every_unit() -> None:
    # docs/architecture.md draws LAYERS; a unit added here must be placed on the page too
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = page.split("```mermaid", 1)[1].split("```", 1)[0]
    missing = [unit for layer in LAYERS for unit in layer if unit not in diagram]
    assert not missing, (
        f"units of LAYERS missing from the diagram in docs/architecture.md: {missing}"
    )


def _breaks_a_rule(importer: str, target: str) -> bool:
    """Whether the edge breaks rule 1 or 3 by itself, or lies on a cycle of the whole graph."""
    layer_of = _layer_of()
    a, b = _unit(importer), _unit(target)
    if a != b and a in layer_of and b in layer_of and layer_of[b] >= layer_of[a]:
        return True
    parts = target.split(".")
    for depth in range(2, len(parts)):
        if parts[depth].startswith("_"):
            owner = ".".join(parts[:depth])
            if not (importer == owner or importer.startswith(owner + ".")):
                return True
            break
    return any(importer in c and target in c for c in _cycles(GRAPH))


def test_every_allowed_edge_is_still_a_breach() -> None:
    # an allowed import that no longer breaks a rule (its cycle was cut elsewhere) must go
    needless = sorted(
        f"{a} -> {b}" for a, b in ALLOWED if (a, b) in EDGES and not _breaks_a_rule(a, b)
    )
    assert not needless, (
        "these allowed imports break no rule any more: remove their lines from ALLOWED:\n"
        + "\n".join(needless)
    )
