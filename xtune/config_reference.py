"""The reference of run config keys (docs/config-keys.md), generated from the schema: a markdown
table per YAML section, each key's type and default read from its dataclass field and its
description from the comments on and directly above the field's line in xtune/config_schema.py.
A field without such a comment is an error, so the reference cannot leave a key undescribed.

`python -m xtune.config_reference > docs/config-keys.md` regenerates the file;
tests/test_config_reference.py fails when the two differ."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import tokenize
from typing import Any

from xtune import config_schema
from xtune.config_schema import (
    BoilerplateConfig,
    ComponentSpec,
    DataConfig,
    FinetuneConfig,
    HierarchyConfig,
    MaskedLMConfig,
    PrepareConfig,
    RunConfig,
    TaskConfig,
    TrackingConfig,
    TrainingConfig,
)

COMMAND = "python -m xtune.config_reference > docs/config-keys.md"


@dataclasses.dataclass(frozen=True)
class Section:
    """One table of the reference: a schema dataclass and the key prefix its fields take."""

    title: str
    prefix: str  # "" for the top level, else e.g. "data" or "tasks.NAME"
    schema: type
    note: str = ""


SECTIONS = (
    Section("Top level", "", RunConfig),
    Section(
        "`data`",
        "data",
        DataConfig,
        "Each task's `tasks.NAME.data` takes the same keys, merged over the top-level `data`.",
    ),
    Section(
        "`data.prepare`",
        "data.prepare",
        PrepareConfig,
        "How each step works, and a YAML example: [preparation.md](preparation.md).",
    ),
    Section(
        "`data.prepare.boilerplate`",
        "data.prepare.boilerplate",
        BoilerplateConfig,
        "`boilerplate: {}` turns it on with these defaults; `null` (the default) leaves it off.",
    ),
    Section("`training`", "training", TrainingConfig),
    Section("`finetune`", "finetune", FinetuneConfig),
    Section(
        "`hierarchy`",
        "hierarchy",
        HierarchyConfig,
        "`hierarchy:` at the top level (a config without `tasks:`) or `tasks.NAME.hierarchy`.",
    ),
    Section(
        "`tracking`",
        "tracking",
        TrackingConfig,
        "Read only when `training.report_to` names `mlflow`.",
    ),
    Section(
        "`tasks.NAME`",
        "tasks.NAME",
        TaskConfig,
        "A config without `tasks:` is one classification task over the top-level keys.",
    ),
    Section(
        "`tasks.NAME.mlm`",
        "tasks.NAME.mlm",
        MaskedLMConfig,
        "Only tasks of type `mlm` (masked-LM training, `xtune pretrain`): docs/pretrain.md.",
    ),
)

# Component keys -> the `xtune list` kinds that print their names and each one's arguments.
LIST_KINDS = {
    "encoder": ("encoders",),
    "head": ("heads",),
    "loss": ("losses",),
    "optimizer": ("optimizers",),
    "schedule": ("schedules",),
    "adversarial": ("adversarial",),
    "tasks.NAME.head": ("heads",),
    "tasks.NAME.loss": ("losses", "score-losses"),
}

INTRO = """\
Every key a run config (`xtune train`, a grid's `base`) can set, by section. A component key
(`encoder`, `head`, `loss`, `optimizer`, `schedule`, `adversarial`) takes a registry name
(`loss: focal`) or the name with its arguments (`loss: {name: focal, gamma: 2.0}`); the
arguments are not listed here: `xtune list KIND` prints every name of a kind with the
arguments it takes and their defaults. `--set KEY=VALUE` overrides any key
(`--set training.epochs=2`)."""


# ---------------------------------------------------------------- descriptions from comments


def comment_lines(source: str) -> dict[int, tuple[str, bool]]:
    """Line number -> (its comment's text, whether the comment is alone on its line)."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            alone = not token.line[:column].strip()
            comments[row] = (token.string.lstrip("#").strip(), alone)
    return comments


def class_node(source: str, name: str) -> ast.ClassDef:
    """The top-level class `name` of a module's source; ValueError when there is none."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise ValueError(f"no class {name} in the schema source")


def field_comments(source: str, class_name: str) -> dict[str, str]:
    """Each annotated field of a class in `source` -> its description: the comment lines
    directly above it, then the comments on its own lines (a multi-line default's included),
    joined into one line; empty when it has none."""
    comments = comment_lines(source)
    found = {}
    for node in class_node(source, class_name).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = []
            row = node.lineno - 1
            while row in comments and comments[row][1]:
                above.insert(0, comments[row][0])
                row -= 1
            own = [comments[r][0] for r in range(node.lineno, node.end_lineno + 1) if r in comments]
            found[node.target.id] = " ".join(text for text in above + own if text)
    return found


def descriptions(schema: type, source: str) -> dict[str, str]:
    """Each field of the dataclass `schema` -> its description; ValueError naming every field
    that has none."""
    comments = field_comments(source, schema.__name__)
    found = {item.name: comments.get(item.name, "") for item in dataclasses.fields(schema)}
    missing = [name for name, text in found.items() if not text]
    if missing:
        raise ValueError(
            f"{schema.__name__}: no description for {', '.join(missing)}; write a comment on "
            f"the field's line or the lines directly above it, then run `{COMMAND}`"
        )
    return found


# ---------------------------------------------------------------- values as a config writes them


def yaml_text(value: Any) -> str:
    """A default as a YAML flow value (`null`, `true`, `[query, value]`, `{name: adamw, ...}`)."""
    if isinstance(value, ComponentSpec):
        return value.name if not value.kwargs else yaml_text(value.to_dict())
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str):
        return value if plain_string(value) else json.dumps(value, ensure_ascii=False)
    return repr(value)


def plain_string(value: str) -> bool:
    """Whether YAML reads the string unquoted as this same string."""
    safe = all(character.isalnum() or character in "._-/" for character in value)
    return bool(value) and safe and value.lower() not in ("null", "true", "false", "yes", "no")


def default_text(item: dataclasses.Field) -> str:
    """A field's default for the table: a YAML value, `required`, or the section it opens."""
    if item.default is not dataclasses.MISSING:
        value = item.default
    elif item.default_factory is not dataclasses.MISSING:
        value = item.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value) and not isinstance(value, ComponentSpec):
        prefix = next(s.prefix for s in SECTIONS if s.schema is type(value))
        return f"section `{prefix}`"
    return f"`{yaml_text(value)}`"


def component_note(key: str, item: dataclasses.Field) -> str:
    """For a component key, where its names and arguments are listed; ValueError for a
    component key that `LIST_KINDS` does not know."""
    if "ComponentSpec" not in str(item.type):
        return ""
    if key not in LIST_KINDS:
        raise ValueError(f"{key}: a component key missing from LIST_KINDS")
    commands = ", ".join(f"`xtune list {kind}`" for kind in LIST_KINDS[key])
    return f"Names and their arguments: {commands}."


# ---------------------------------------------------------------- markdown


def cell(text: str) -> str:
    """Text for a table cell (a `|` would end the cell, even inside backticks)."""
    return text.replace("|", "\\|")


def section_markdown(section: Section, source: str) -> list[str]:
    """A section's heading, its dataclass's docstring, its note and its table of keys."""
    lines = [f"## {section.title}", "", inspect.getdoc(section.schema) or "", ""]
    if section.note:
        lines += [section.note, ""]
    lines += ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    described = descriptions(section.schema, source)
    for item in dataclasses.fields(section.schema):
        key = f"{section.prefix}.{item.name}" if section.prefix else item.name
        text = described[item.name]
        if note := component_note(key, item):
            text = f"{text.rstrip('.')}. {note}"
        cells = [f"`{key}`", f"`{item.type}`", default_text(item), text]
        lines.append("| " + " | ".join(cell(text) for text in cells) + " |")
    return lines + [""]


def reference(source: str | None = None) -> str:
    """The whole reference, docs/config-keys.md's text."""
    source = inspect.getsource(config_schema) if source is None else source
    lines = [
        "# Run config keys",
        "",
        f"Generated from xtune/config_schema.py by `{COMMAND}`; do not edit by hand.",
        "",
        INTRO,
        "",
    ]
    for section in SECTIONS:
        lines += section_markdown(section, source)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    print(reference(), end="")


if __name__ == "__main__":
    main()
