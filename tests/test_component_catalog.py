"""xtune/component_catalog.json is what the live registries say (`xtune.component_catalog`):
the same arguments, annotations that read back to the builders' hints, the builders' own
meaning checks, and those checks import no TensorFlow."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xtune.catalog import CATALOG_FILE, ComponentTable, load_catalog, resolve, table
from xtune.component_catalog import COMMAND, check_annotations, live_registry, text

REPOSITORY = Path(__file__).resolve().parents[1]
KINDS = list(load_catalog())


def unbound(function):
    return getattr(function, "__func__", function)


def test_the_committed_catalog_is_the_generated_one():
    assert CATALOG_FILE.read_text(encoding="utf-8") == text(), (
        f"xtune/component_catalog.json differs from the registries; regenerate it: {COMMAND}"
    )


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "tasks"])
def test_a_live_registry_reads_as_its_table(kind):
    """`ComponentTable.of` (what `parse_component` makes of a live registry) and the file
    describe each component alike; the file adds the facts the config reads."""
    live, written = ComponentTable.of(live_registry(kind)), table(kind)
    assert (live.kind, live.names()) == (written.kind, written.names())
    for name, component in written.components.items():
        described = {key: value for key, value in component.entry.items() if key != "facts"}
        assert live.get(name).entry == described, name


@pytest.mark.parametrize("kind", KINDS)
def test_each_check_is_the_components_own(kind):
    registry = live_registry(kind)
    for name, component in table(kind).components.items():
        builder = registry.get(name)
        if kind == "tasks":
            rules = resolve(component.fact("rules"))
            assert rules in builder.__mro__ and rules.type_name == name
            continue
        own = getattr(builder, "check_arguments", None)
        if own is None:
            assert "check" not in component.entry, name
        else:
            assert unbound(resolve(component.entry["check"])) is unbound(own), name


@pytest.mark.parametrize("kind", ["optimizers", "schedules"])
def test_a_factorys_checker_takes_its_arguments_and_defaults(kind):
    """`checked_by(checker)`: the config calls `checker` with what the factory would get."""
    registry = live_registry(kind)
    for name in registry.names():
        factory = registry.get(name)
        arguments = [(p.name, p.default) for p in inspect.signature(factory).parameters.values()]
        checked = inspect.signature(factory.check_arguments).parameters.values()
        assert [(p.name, p.default) for p in checked] == arguments, name


def test_an_annotation_that_does_not_read_back_is_refused():
    def build(folder: Path | None = None, size: int = 1):
        """A builder whose hint names a class the catalog's annotations cannot."""

    entry = {"arguments": [{"name": "folder", "annotation": "pathlib.Path | None"}]}
    with pytest.raises(ValueError, match="'folder' does not read back"):
        check_annotations(build, "thing 'build'", entry)
    check_annotations(
        build, "thing 'build'", {"arguments": [{"name": "size", "annotation": "int"}]}
    )


CHECKS_WITHOUT_TENSORFLOW = """
import json, sys
from xtune.catalog import load_catalog, resolve

for components in load_catalog().values():
    for component in components.components.values():
        if "check" in component.entry:
            resolve(component.entry["check"])
        if "rules" in component.entry.get("facts", {}):
            resolve(component.fact("rules"))
        component.hints()
print(json.dumps(sorted(m for m in ("tensorflow", "keras", "sklearn") if m in sys.modules)))
"""


def test_the_catalog_and_its_checks_import_no_tensorflow():
    done = subprocess.run(
        [sys.executable, "-c", CHECKS_WITHOUT_TENSORFLOW],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
