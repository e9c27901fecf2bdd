"""Writes the component catalog (`xtune.catalog`) from the live registries:

    python -m xtune.component_catalog > xtune/component_catalog.json

The registries import their components, most of them Keras layers and losses, so this imports
TensorFlow; that is why the config and `xtune list` read the written file instead.
tests/test_component_catalog.py fails when the committed file differs from this output.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from xtune.catalog import (
    argument_hints,
    describe_builder,
    dotted_path,
    evaluate_annotation,
    summary_line,
)
from xtune.components import KINDS

COMMAND = "python -m xtune.component_catalog > xtune/component_catalog.json"
# What the config reads of a component besides its arguments: class attributes, by kind.
FACTS = {"losses": ("multi_label", "default_threshold"), "score-losses": ("model_output",)}


def live_registry(kind: str) -> Any:
    """The registry of one kind of `xtune list`, with its components imported."""
    _, module_name, attribute = KINDS[kind]
    return getattr(importlib.import_module(module_name), attribute)


def catalog() -> dict[str, Any]:
    """Every registry's table by kind (`metrics` is a table of directions, not a registry)."""
    return {kind: describe_registry(kind) for kind in KINDS if kind != "metrics"}


def describe_registry(kind: str) -> dict[str, Any]:
    registry = live_registry(kind)
    components = {}
    for name in registry.names():
        builder = registry.get(name)
        entry = describe_task(builder) if kind == "tasks" else describe_builder(builder)
        check_annotations(builder, f"{kind} {name!r}", entry)
        if kind in FACTS:
            entry["facts"] = {fact: getattr(builder, fact) for fact in FACTS[kind]}
        components[name] = entry
    return {"kind": registry.kind, "components": components}


def describe_task(task_class: type) -> dict[str, Any]:
    """A task type's entry: its summary and its rules class, the class of its MRO that names
    the type (`xtune.tasks.checks`); a task type takes no component arguments."""
    rules = next(cls for cls in task_class.__mro__ if "type_name" in vars(cls))
    return {
        "arguments": [],
        "summary": summary_line(task_class),
        "facts": {"rules": dotted_path(rules)},
    }


def check_annotations(builder: Any, what: str, entry: dict[str, Any]) -> None:
    """Each argument's annotation reads back to the builder's own type hint."""
    hints = argument_hints(builder)
    for argument in entry["arguments"]:
        try:
            same = evaluate_annotation(argument["annotation"]) == hints.get(argument["name"], Any)
        except (NameError, SyntaxError, TypeError, AttributeError):
            same = False
        if not same:
            raise ValueError(
                f"{what}: the hint of {argument['name']!r} does not read back from "
                f"{argument['annotation']!r}; write it with typing or collections.abc names"
            )


def text() -> str:
    return json.dumps(catalog(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(text())
