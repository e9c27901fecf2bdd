"""`xtune list`: the components a config can name, with the arguments and defaults it takes.

Read from the component catalog (`xtune.catalog`), so listing imports no component and no
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

from xtune.catalog import table
from xtune.metric_directions import METRIC_DIRECTIONS

# kind -> (config key that names one, module holding the registry, registry attribute). The
# registries import their components, most of them Keras layers or losses;
# `xtune.component_catalog` reads them to write the catalog this module lists from.
KINDS: dict[str, tuple[str, str, str]] = {
    "encoders": ("encoder", "xtune.encoders", "ENCODERS"),
    "heads": ("head", "xtune.heads", "HEADS"),
    "losses": ("loss", "xtune.losses", "LOSSES"),
    "score-losses": (
        "tasks.NAME.loss of regression / bi_encoder tasks",
        "xtune.losses",
        "SCORE_LOSSES",
    ),
    "optimizers": ("optimizer", "xtune.training.optimizers", "OPTIMIZERS"),
    "schedules": ("schedule", "xtune.training.optimizers", "SCHEDULES"),
    "adversarial": ("adversarial", "xtune.training.adversarial", "ADVERSARIAL"),
    "tasks": ("tasks.NAME.type", "xtune.tasks", "TASKS"),
    "samplers": ("training.sampler", "xtune.tasks", "SAMPLERS"),
    "metrics": (
        "training.metric, tasks.NAME.metric",
        "xtune.metric_directions",
        "METRIC_DIRECTIONS",
    ),
}
WIDTH = 100  # of a printed line
# What a user may type for a kind (`xtune list loss` as well as `xtune list losses`).
ALIASES = {kind[: -2 if kind.endswith("sses") else -1]: kind for kind in KINDS if kind[-1] == "s"}


def kind_of(word: str) -> str:
    """The listed kind a user's word names (`loss` -> `losses`); ValueError when none."""
    kind = ALIASES.get(word, word)
    if kind not in KINDS:
        raise ValueError(f"unknown kind {word!r}; valid kinds: {', '.join(KINDS)}")
    return kind


def describe(kind: str) -> list[str]:
    """The lines `xtune list KIND` prints: a heading, then each name with its arguments and
    defaults (as a config writes them) and the first line of its docstring."""
    lines = [f"{kind} (config key: {KINDS[kind][0]})"]
    if kind == "metrics":
        return lines + [
            f"  {name:<18} {'higher' if way == 'max' else 'lower'} is better"
            for name, way in METRIC_DIRECTIONS.items()
        ]
    components = table(kind)
    for name in components.names():
        entry = components.get(name).entry
        arguments = "" if kind == "tasks" else signature_text(entry["arguments"])
        lines += wrapped(f"{name}{arguments}", "  ", " " * (len(name) + 3))
        lines += wrapped(entry["summary"], "      ", "      ")
    if kind == "tasks":
        lines += wrapped(f"every task takes: {task_keys_text()}", "  ", "    ")
    return lines


def wrapped(text: str, first: str, rest: str) -> list[str]:
    if not text:
        return []
    return textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_long_words=False
    )


def signature_text(arguments: list[dict[str, Any]]) -> str:
    """`(pooling='mean', units=[], dropout=0.1)`: the arguments as a call would write them."""
    parts = [
        f"{a['name']}={a['default']}" if "default" in a else f"{a['name']} (required)"
        for a in arguments
    ]
    return f"({', '.join(parts)})"


def task_keys_text() -> str:
    from xtune.config import TaskConfig

    parts = []
    for item in dataclasses.fields(TaskConfig):
        if item.default is not dataclasses.MISSING:
            default = item.default
        else:
            default = item.default_factory()  # type: ignore[misc]
        if hasattr(default, "kwargs"):  # a component: its name
            parts.append(f"{item.name}={default.name!r}")
        elif dataclasses.is_dataclass(default):
            parts.append(f"{item.name} (a section, as the top-level one)")
        else:
            parts.append(f"{item.name}={default!r}")
    return ", ".join(parts)
