"""The component catalog: what the config and `xtune list` know of every registered component,
read from xtune/component_catalog.json without importing one (most import TensorFlow).

For each registry (`encoders`, `heads`, `losses`, ...) the file holds, by name: the arguments a
config may give (in signature order; each one's type annotation, and its default as `repr`
unless it is required), the first paragraph of the docstring, the dotted path
(`module:qualname`) of its TF-free meaning check, and the facts the config needs (a loss's
`multi_label`, a task type's rules class, ...). `xtune.component_catalog` writes the file from
the live registries with `describe_builder` below, the introspection a `ComponentTable` of a
live registry uses too; a test fails when the file drifts from them.
"""

from __future__ import annotations

import ast
import collections.abc
import functools
import importlib
import inspect
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("component_catalog.json")
INTERNAL_ARGUMENTS = {"self", "name", "dtype", "reduction", "trainable"}
# The names an annotation of the catalog may use: what the builders' hints are written with.
ANNOTATION_NAMES: dict[str, Any] = {
    "__builtins__": {},
    "typing": typing,
    "collections": collections,
    **{kind.__name__: kind for kind in (bool, int, float, str, list, tuple, dict)},
}


# ---------------------------------------------------------------- a live builder's arguments


def initializers(builder: Any) -> list[Any]:
    """The functions whose named arguments a registered builder takes from YAML.

    For a class, each `__init__` up its MRO, as long as the one below passes `**kwargs` on
    (framework bases like `keras.layers.Layer` are not xtune settings).
    """
    if not inspect.isclass(builder):
        return [builder]
    functions = []
    for cls in builder.__mro__:
        if cls.__module__.split(".")[0] != "xtune" or "__init__" not in vars(cls):
            continue
        functions.append(cls.__init__)
        if not named_parameters(cls.__init__)[1]:
            break
    return functions


def named_parameters(function: Any) -> tuple[set[str], bool]:
    """The names a config may give `function`, and whether it takes `**kwargs`."""
    params = inspect.signature(function).parameters.values()
    names = {
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in INTERNAL_ARGUMENTS
        and not p.name.startswith("_")
    }
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def accepted_arguments(builder: Any) -> set[str]:
    """Keyword arguments a registered builder takes from YAML."""
    return set().union(*(named_parameters(f)[0] for f in initializers(builder)))


def required_arguments(builder: Any) -> set[str]:
    """Arguments without a default (`path` of the `hf` encoder)."""
    required = set()
    for function in initializers(builder):
        for p in inspect.signature(function).parameters.values():
            if p.name in named_parameters(function)[0] and p.default is p.empty:
                required.add(p.name)
    return required


def argument_hints(builder: Any) -> dict[str, Any]:
    """Type hints of the builder's YAML arguments (a subclass's hint wins over its base's)."""
    hints: dict[str, Any] = {}
    for function in reversed(initializers(builder)):
        try:
            hints.update(typing.get_type_hints(function))
        except (NameError, TypeError):  # a hint that cannot be resolved checks nothing
            continue
    return hints


def arguments(builder: Any) -> list[inspect.Parameter]:
    """The arguments a config may give `builder`, in signature order, a subclass's before its
    base's; a required one has no default."""
    seen: dict[str, inspect.Parameter] = {}
    for function in initializers(builder):
        names = named_parameters(function)[0]
        for parameter in inspect.signature(function).parameters.values():
            if parameter.name in names and parameter.name not in seen:
                seen[parameter.name] = parameter
    return list(seen.values())


def summary_line(builder: Any) -> str:
    """The first paragraph of the builder's docstring, on one line."""
    doc = inspect.getdoc(builder) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def dotted_path(function: Any) -> str:
    """`module:qualname` of a function or a class's (bound) method, as `resolve` reads it."""
    return f"{function.__module__}:{function.__qualname__}"


def resolve(path: str) -> Any:
    """What `dotted_path` names: the module imported, then attributes read along the name."""
    module_name, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def annotation_text(hint: Any) -> str:
    """A type hint as text that `evaluate_annotation` reads back to the same hint."""
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        module = "" if hint.__module__ == "builtins" else f"{hint.__module__}."
        return f"{module}{hint.__qualname__}"
    return repr(hint)


@functools.cache
def evaluate_annotation(text: str) -> Any:
    """The type hint an annotation of the catalog names (typing and collections.abc names and
    the builtin types only; the catalog is xtune's own file, never a user's)."""
    return eval(text, dict(ANNOTATION_NAMES))  # noqa: S307


def describe_builder(builder: Any) -> dict[str, Any]:
    """A builder's catalog entry: its arguments (annotation; default as repr; `required`
    when it has no default), its summary line, and its meaning check's dotted path (if any)."""
    hints, required = argument_hints(builder), required_arguments(builder)
    described = []
    for parameter in arguments(builder):
        argument: dict[str, Any] = {
            "name": parameter.name,
            "annotation": annotation_text(hints.get(parameter.name, Any)),
        }
        if parameter.default is not parameter.empty:
            argument["default"] = repr(parameter.default)
        if parameter.name in required:
            argument["required"] = True
        described.append(argument)
    entry: dict[str, Any] = {"arguments": described, "summary": summary_line(builder)}
    checker = getattr(builder, "check_arguments", None)
    if checker is not None:
        entry["check"] = dotted_path(checker)
    return entry


# ---------------------------------------------------------------- the catalog's view


@dataclass(frozen=True)
class Component:
    """One registered component as the catalog describes it (see `describe_builder`); one of a
    live registry keeps its `builder`, whose own hints and check it then uses."""

    name: str
    entry: dict[str, Any]
    builder: Any = field(default=None, compare=False)

    def accepted(self) -> set[str]:
        return {argument["name"] for argument in self.entry.get("arguments", [])}

    def required(self) -> set[str]:
        return {a["name"] for a in self.entry.get("arguments", []) if a.get("required")}

    def hints(self) -> dict[str, Any]:
        """The type hint of each argument (`typing.Any` for one without)."""
        if self.builder is not None:
            return argument_hints(self.builder)
        arguments = self.entry.get("arguments", [])
        return {a["name"]: evaluate_annotation(a["annotation"]) for a in arguments}

    def default(self, argument: str) -> Any:
        """An argument's default value (a literal), or None when it has none."""
        for described in self.entry.get("arguments", []):
            if described["name"] == argument and "default" in described:
                return ast.literal_eval(described["default"])
        return None

    def fact(self, name: str) -> Any:
        return self.entry["facts"][name]

    def check(self, kwargs: dict[str, Any]) -> None:
        """Check the arguments by meaning (`check_arguments`), building nothing; raises
        `ValueError` naming the argument. Components without a check pass."""
        if self.builder is not None:
            checker = getattr(self.builder, "check_arguments", None)
        else:
            checker = resolve(self.entry["check"]) if "check" in self.entry else None
        if checker is not None:
            checker(**kwargs)


@dataclass(frozen=True)
class ComponentTable:
    """One registry's components as the catalog describes them; what the config validates a
    component section against (`kind`: the registry's, e.g. "loss", "task sampler")."""

    kind: str
    components: dict[str, Component]

    def names(self) -> list[str]:
        return sorted(self.components)

    def __contains__(self, name: object) -> bool:
        return name in self.components

    def get(self, name: str) -> Component:
        return self.components[name]

    @classmethod
    def from_entries(cls, kind: str, entries: dict[str, dict[str, Any]]) -> ComponentTable:
        return cls(kind, {name: Component(name, entry) for name, entry in entries.items()})

    @classmethod
    def of(cls, registry: Any) -> ComponentTable:
        """The table of a live registry (its components imported), or `registry` itself when
        it is a table: the same introspection the catalog file is written with."""
        if isinstance(registry, ComponentTable):
            return registry
        components = {}
        for name in registry.names():
            builder = registry.get(name)
            components[name] = Component(name, describe_builder(builder), builder)
        return cls(registry.kind, components)


@functools.cache
def load_catalog() -> dict[str, ComponentTable]:
    """Every kind's table, read from xtune/component_catalog.json."""
    raw = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    return {
        kind: ComponentTable.from_entries(described["kind"], described["components"])
        for kind, described in raw.items()
    }


def table(kind: str) -> ComponentTable:
    """The table of one kind of `xtune list` (`heads`, `score-losses`, `samplers`, ...)."""
    return load_catalog()[kind]
