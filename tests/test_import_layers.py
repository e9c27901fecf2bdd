"""Imports point one way: each xtune module imports only its own package or lower layers, and
no two modules import each other, counting imports inside functions (read with `ast`)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xtune"

# Top to bottom. A module may import its own package (the entry it falls under) and any
# entry of a lower layer; never a sibling package of its own layer, never a higher layer.
LAYERS: list[tuple[str, ...]] = [
    ("xtune.cli", "xtune.api"),  # the command line and the Python API
    # Writes the component catalog from the live registries (imports every component).
    ("xtune.component_catalog",),
    # `xtune list`, `xtune init`, and docs/config-keys.md (generated from the schema alone)
    ("xtune.components", "xtune.config_template", "xtune.config_reference"),
    ("xtune.grid",),
    # The YAML machinery validates against the component catalog, and calls the task types'
    # rules, samplers and encoder limits (TF-free modules of those packages), so it sits above
    # them; below it the schema alone.
    ("xtune.config",),
    ("xtune.training", "xtune.export"),
    ("xtune.tasks",),
    ("xtune.run_folder",),
    ("xtune.model", "xtune.data"),
    ("xtune.config_schema",),
    ("xtune.encoders", "xtune.heads", "xtune.losses"),
    (
        "xtune.registry",
        "xtune.catalog",
        "xtune.metrics",
        "xtune.files",
        "xtune.thresholds",
        "xtune.faults",
        "xtune.interrupts",
        "xtune.quiet_tensorflow",
        "xtune",
    ),
    # Names settings choose among, without numpy or scikit-learn (the config reads these).
    ("xtune.metric_directions", "xtune.threshold_objectives"),
    ("xtune.lazy_exports",),  # the packages' lazy `__getattr__`
]

# The one edge that points up, with its reason: reloading a run folder (tasks layer; the
# trainer and the export both reload one) parses the config.yaml xtune wrote, with the YAML
# machinery that sits above the tasks whose registries it validates against.
KNOWN_UPWARD = {
    ("xtune.tasks.run_folder", "xtune.config"): "re-reading a run folder's config parses YAML "
    "from the task layer",
    ("xtune", "xtune.api"): "the package's Python API (`xtune.train`, `xtune.load`) is imported "
    "on first use (PEP 562 `__getattr__`), so `import xtune` stays light",
}


def module_files() -> dict[str, Path]:
    """Every module under xtune/ by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported dotted name lands in (`xtune.heads.base.HEADS` -> `...base`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute dotted names an import statement reads (`from . import x` resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    return [f"{base}.{alias.name}" if base else alias.name for alias in node.names]


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> where (`file:line`), for every xtune import at any depth:
    module level, inside functions, under `if TYPE_CHECKING:`."""
    modules = module_files()
    edges: dict[tuple[str, str], set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for name in imported_names(node, module, path.name == "__init__.py"):
                if name != "xtune" and not name.startswith("xtune."):
                    continue
                target = resolve(name, modules)
                if target and target != module:
                    where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                    edges.setdefault((module, target), set()).add(where)
    return {edge: sorted(where) for edge, where in edges.items()}


def component(module: str) -> str | None:
    """The LAYERS entry a module falls under (the longest matching one)."""
    entries = [entry for layer in LAYERS for entry in layer]
    matches = [e for e in entries if module == e or (e != "xtune" and module.startswith(e + "."))]
    return max(matches, key=len, default=None)


def layer_index(entry: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if entry in layer)


def upward_edges() -> dict[tuple[str, str], list[str]]:
    """Edges into the importer's own layer (another package) or a higher one."""
    bad = {}
    for (importer, imported), where in import_edges().items():
        source, target = component(importer), component(imported)
        if source == target:
            continue
        if layer_index(target) <= layer_index(source):
            bad[(importer, imported)] = where
    return bad


def import_cycles() -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in module_files()}
    for importer, imported in import_edges():
        graph[importer].add(imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                cycles.append(members)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def describe(edges: dict[tuple[str, str], list[str]]) -> str:
    return "\n".join(f"{a} -> {b} ({', '.join(where)})" for (a, b), where in sorted(edges.items()))


def test_the_graph_sees_imports_inside_functions():
    edges = import_edges()
    # `from xtune.tasks.samplers import get_sampler` in a def
    assert ("xtune.config", "xtune.tasks.samplers") in edges
    assert ("xtune.losses.cosent", "xtune.losses.base") in edges


def test_every_module_has_a_layer():
    assert [m for m in module_files() if component(m) is None] == []


def test_imports_point_down():
    bad = {edge: where for edge, where in upward_edges().items() if edge not in KNOWN_UPWARD}
    assert not bad, "imports that point up or sideways:\n" + describe(bad)


def test_data_and_components_read_only_the_config_schema():
    """The YAML machinery (`xtune.config`) imports tasks; data and components never load it."""
    lower = ("xtune.data", "xtune.encoders", "xtune.heads", "xtune.losses", "xtune.config_schema")
    bad = {
        (a, b): where
        for (a, b), where in import_edges().items()
        if b == "xtune.config" and component(a) in lower
    }
    assert not bad, describe(bad)


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "import cycles: " + "; ".join(", ".join(sorted(c)) for c in cycles)
