"""YAML -> typed, frozen run configs; unknown keys and names are errors that list the valid ones.

Loading, `base:` merging, `--set` overrides, type checking and validation against the
component catalog (`xtune.catalog`: the registries' components described without importing
them, so checking a config never imports TensorFlow) live here; the dataclasses they fill live
in `xtune.config_schema` and are re-exported, so `from xtune.config import RunConfig` keeps
working.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import difflib
import importlib.util
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

# The introspection of live builders lives with the catalog; `xtune.config` re-exports it.
from xtune.catalog import (  # noqa: F401  (re-exported)
    ComponentTable,
    accepted_arguments,
    argument_hints,
    initializers,
    named_parameters,
    required_arguments,
    resolve,
    table,
)
from xtune.config_schema import (
    DEFAULT_PAIR_PARTS,  # noqa: F401  (re-exported)
    PREPARE_DUPLICATES,
    PREPARE_WHITESPACE,
    PREPARE_WIDTHS,
    SINGLE_TASK,  # noqa: F401  (re-exported)
    ComponentSpec,
    DataConfig,
    FinetuneConfig,
    HierarchyConfig,
    MaskedLMConfig,
    RunConfig,
    TaskConfig,
    TrackingConfig,
    TrainingConfig,
    mirroring_blocker,
)
from xtune.encoders.positions import max_positions, num_layers
from xtune.metric_directions import METRIC_DIRECTIONS

# ConfigError lives in xtune.registry (components raise it without importing this module);
# `from xtune.config import ConfigError` keeps working.
from xtune.registry import ConfigError, check_number, interval
from xtune.tasks.checks import check_hierarchy
from xtune.tasks.signatures import check_task_names
from xtune.threshold_objectives import DECISION_RULES, OBJECTIVES, objective_for


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` and `5e-5` as floats (YAML 1.1 wants `1.0e-3`), and
    refuses a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if not isinstance(node, yaml.MappingNode):  # e.g. `!!set 0`: SafeLoader's error
            return super().construct_mapping(node, deep=deep)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges may repeat keys: that is what they are for
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, collections.abc.Hashable):
                break  # SafeLoader reports unhashable keys itself
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one "
                    "mapping (row names and keys must be unique)"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506  (a SafeLoader subclass)


SECTIONS = {
    "data": DataConfig,
    "finetune": FinetuneConfig,
    "training": TrainingConfig,
    "hierarchy": HierarchyConfig,
    "tracking": TrackingConfig,
}
COMPONENT_SECTIONS = ("encoder", "head", "loss", "optimizer", "schedule", "adversarial")
CHOICES = {
    "data.format": ("auto", "csv", "tsv", "jsonl", "xlsx"),
    "data.label_format": ("delimited", "list", "columns", "levels"),
    "data.truncation": ("head", "tail", "head_tail", "head_tail_pair"),
    "data.prepare.width": PREPARE_WIDTHS,
    "data.prepare.whitespace": PREPARE_WHITESPACE,
    "mlm.dev_split": ("documents", "labels"),
    "data.prepare.duplicates": PREPARE_DUPLICATES,
    "data.bad_rows": ("error", "skip"),
    "data.unknown_labels": ("error", "skip_rows", "ignore_labels"),
    "data.padding": ("bucket", "dynamic", "fixed"),
    "training.mixed_precision": ("auto", "float32", "mixed_bfloat16", "mixed_float16"),
    "training.distribution": ("auto", "mirrored", "none"),
    "hierarchy.mode": ("none", "leaves", "ancestors", "per_level", "coherent"),
    "hierarchy.decoding": ("auto", "threshold", "best_path", "top_down"),
}


# The catalog's kind (`xtune list`) of each component section.
SECTION_KINDS = {
    "encoder": "encoders",
    "head": "heads",
    "loss": "losses",
    "optimizer": "optimizers",
    "schedule": "schedules",
    "adversarial": "adversarial",
}


def component_tables() -> dict[str, ComponentTable]:
    """What the config validates each component section against: the catalog's tables."""
    return {section: table(kind) for section, kind in SECTION_KINDS.items()}


def registries() -> dict[str, Any]:
    """The live registry behind each component section, for code that builds components (it
    imports them, and so TensorFlow); the config validates against `component_tables`."""
    from xtune.encoders import ENCODERS
    from xtune.heads import HEADS
    from xtune.losses import LOSSES
    from xtune.training.adversarial import ADVERSARIAL
    from xtune.training.optimizers import OPTIMIZERS, SCHEDULES

    return {
        "encoder": ENCODERS,
        "head": HEADS,
        "loss": LOSSES,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
        "adversarial": ADVERSARIAL,
    }


# ---------------------------------------------------------------- loading


def read_yaml_text(path: str | Path, what: str = "config file") -> str:
    """A YAML file's text; a missing, unreadable or non-UTF-8 file is one `ConfigError`."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what}: {error.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: {not_utf8(error)}") from None


def not_utf8(error: UnicodeDecodeError) -> str:
    byte = error.object[error.start]
    return f"not UTF-8 (byte 0x{byte:02X} at offset {error.start}); save it as UTF-8"


def parse_yaml_text(text: str, path: str | Path, loader: type = YamlLoader) -> Any:
    """`yaml.load` whose errors are one line naming the file, the line and the problem."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506  (SafeLoader subclasses only)
    except ConfigError as error:  # a duplicated key
        raise ConfigError(f"{path}: {error}") from None
    except yaml.MarkedYAMLError as error:
        raise ConfigError(f"{path}: {describe_yaml_error(error)}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {one_line(str(error))}") from None


def describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = one_line(error.problem or error.context or "syntax error")
    tag = re.search(r"the tag '([^']*)'", problem)
    if isinstance(error, yaml.constructor.ConstructorError) and tag:
        return f"{where}the tag {tag.group(1)!r} is not allowed (plain YAML values only)"
    context = f" ({one_line(error.context)})" if error.context and error.problem else ""
    return f"{where}not valid YAML: {problem}{context}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    raw = parse_yaml_text(read_yaml_text(path), path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_run_config(
    path: str | Path, overrides: list[str] | dict[str, Any] | None = None
) -> RunConfig:
    """Read a run config file (and its `base:` files), apply `key=value` overrides, validate."""
    raw = with_bases(load_yaml(path), Path(path), {Path(path).resolve()})
    raw = apply_overrides(raw, overrides or {}, source=str(path))
    return parse_run_config(raw, source=str(path))


def with_bases(raw: dict[str, Any], path: Path, seen: set[Path]) -> dict[str, Any]:
    """`raw` merged over its `base:` file, or list of files (each over the one before it),
    relative to `path`'s folder; a file that includes itself is an error."""
    if "base" not in raw:
        return raw
    raw = dict(raw)
    bases = raw.pop("base")
    names = [bases] if isinstance(bases, str) else bases
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"{path}: base: expected a file name or a list of file names, got {short(bases)}"
        )
    merged: dict[str, Any] = {}
    for name in names:
        file = path.parent / name
        if file.resolve() in seen:
            raise ConfigError(f"{path}: base: {file} includes itself")
        merged = deep_merge(merged, with_bases(load_yaml(file), file, seen | {file.resolve()}))
    return deep_merge(merged, raw)


def parse_override(text: str) -> tuple[str, Any]:
    """`training.epochs=3` -> ("training.epochs", 3); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. training.epochs=3")
    key, value = text.split("=", 1)
    return key.strip(), parse_yaml_text(value, f"override {text!r}") if value.strip() else None


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | dict[str, Any], source: str = "overrides"
) -> dict[str, Any]:
    """Set dotted keys (`head.units=[256]`) on a copy of a raw config dict."""
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        tasks = raw.get("tasks")
        if len(parts) >= 3 and parts[0] == "tasks" and parts[1] not in (tasks or {}):
            names = list(tasks or {})
            raise ConfigError(
                f"{source}: cannot set {dotted!r}: there is no task {parts[1]!r}"
                f"{did_you_mean(parts[1], names)}; tasks: {', '.join(map(str, names)) or 'none'}"
                f" (add a task with its whole mapping: tasks.{parts[1]}={{...}})"
            )
        node = raw
        component = parts[0] in COMPONENT_SECTIONS or is_task_component(parts)
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str) and component:
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: cannot set {dotted!r}: {part!r} is not a section")
            node[part] = child
            node = child
        if parts[-1] == "name" and (
            (len(parts) == 2 and parts[0] in COMPONENT_SECTIONS)
            or (len(parts) == 4 and is_task_component(parts))
        ):
            # Switching component keeps none of the old component's arguments.
            node.clear()
        node[parts[-1]] = value
    return raw


TASK_COMPONENTS = ("head", "loss")


def is_task_component(parts: list[str]) -> bool:
    """`tasks.<name>.loss.<key>`: a task's component, set like a top-level one."""
    return len(parts) >= 3 and parts[0] == "tasks" and parts[2] in TASK_COMPONENTS


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            if (
                key in COMPONENT_SECTIONS
                and "name" in value
                and value["name"] != out[key].get("name")
            ):
                out[key] = copy.deepcopy(value)
            else:
                out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- validation

# Sane ranges of number settings (`check_number` arguments): a value like `batch_size: 0` or
# `epochs: 100000000` fails when the config is read, not deep inside TensorFlow.
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_BATCH_SIZE = 65536
MIN_MAX_LENGTH = 8  # [CLS] text [SEP] pair [SEP] and a few tokens of each text
MAX_MAX_LENGTH = 65536  # the encoder's position embeddings are the real limit, when known
MAX_INTEGER = 2**53  # any other integer setting: exact as a float, and in JSON
RANGES: dict[str, dict[str, Any]] = {
    "data.dev_fraction": {"low": 0.0, "high": 1.0, "open_low": True, "open_high": True},
    "data.split_seed": {"low": 0, "high": MAX_SEED},
    "data.max_train_rows": {"low": 1},
    "data.max_length": {"low": MIN_MAX_LENGTH, "high": MAX_MAX_LENGTH},
    "data.head_tokens": {"low": 0, "high": MAX_MAX_LENGTH},
    "data.prepare.boilerplate.share": {
        "low": 0.0,
        "high": 1.0,
        "open_low": True,
        "open_high": True,
    },
    # A sentence in one row is no boilerplate, whatever share of a tiny corpus that row is.
    "data.prepare.boilerplate.min_rows": {"low": 2, "high": MAX_INTEGER},
    "data.prepare.boilerplate.min_chars": {"low": 1, "high": 100_000},
    # Shorter n-grams are common words and phrases, not templates.
    "data.prepare.boilerplate.ngram_chars": {"low": 4, "high": 10_000},
    "data.prepare.boilerplate.max_items": {"low": 1, "high": 1_000_000},
    "training.epochs": {"low": 1, "high": 10_000},
    "training.batch_size": {"low": 1, "high": MAX_BATCH_SIZE},
    "training.eval_batch_size": {"low": 1, "high": MAX_BATCH_SIZE},
    "training.seed": {"low": 0, "high": MAX_SEED},
    "training.early_stopping_patience": {"low": 1, "high": 10_000},
    "training.steps_per_epoch": {"low": 1},
    "training.verbose": {"low": 0, "high": 2},
    "finetune.train_top_layers": {"low": 0, "high": 1000},
    "finetune.reinit_top_layers": {"low": 0, "high": 1000},
    "finetune.frozen_epochs": {"low": 0, "high": 10_000},
    "finetune.lora_rank": {"low": 1, "high": 65536},
    "finetune.lora_alpha": {"low": 0.0, "open_low": True},
    "finetune.prompt_length": {"low": 0, "high": 4096},
    "finetune.prefix_length": {"low": 0, "high": 4096},
    "mlm.mask_rate": {"low": 0.0, "high": 1.0, "open_low": True, "open_high": True},
}
# List settings whose every item must be in range.
ITEM_RANGES: dict[str, dict[str, Any]] = {
    "training.report_thresholds": {"low": 0, "high": 1, "open_low": True, "open_high": True},
    "hierarchy.level_weights": {"low": 0.0, "open_low": True},
}
NON_EMPTY = ("data.text", "data.label_separator", "data.label_path_separator")

SHORT = reprlib.Repr()
SHORT.maxstring, SHORT.maxother, SHORT.maxlist, SHORT.maxdict, SHORT.maxlevel = 60, 60, 6, 4, 2


def short(value: Any) -> str:
    """`repr` cut to a readable length: error messages quote what the user wrote."""
    return SHORT.repr(value)


def did_you_mean(word: Any, options: Any) -> str:
    """` (did you mean 'epochs'?)` for the closest valid name, or ''."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_run_config(
    raw: dict[str, Any], source: str = "config", stored: bool = False
) -> RunConfig:
    """Validate a raw dict into a `RunConfig`, with errors naming `source` and the key path.

    Values are checked by type and by meaning (ranges, choices, each component's own
    `check_arguments`, `data.max_length` against the encoder's positions), so a config that
    parses will not fail later for any of those reasons. `stored`: the config.yaml of a run
    folder, whose encoder is rebuilt from the folder's own files: the encoder's and data's
    paths may have moved away, so they are not looked up.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {short(raw)}")
    known = set(SECTIONS) | set(COMPONENT_SECTIONS) | {"tasks"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key {short(key)}{did_you_mean(key, known)}; "
                f"valid top-level keys: {', '.join(sorted(known))}"
            )
    multi_task = raw.get("tasks") is not None
    if "data" not in raw and not multi_task:
        raise ConfigError(f"{source}: missing required section 'data'")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        if name in raw:
            kwargs[name] = parse_section(cls, raw[name], name, source)
    tables = component_tables()
    for name in COMPONENT_SECTIONS:
        if name in raw:
            kwargs[name] = parse_component(raw[name], tables[name], name, source)
    if multi_task:
        kwargs["tasks"] = parse_tasks(raw["tasks"], raw.get("data") or {}, tables, source)
        kwargs.setdefault("data", next(iter(kwargs["tasks"].values())).data)
    config = RunConfig(**kwargs)
    if not multi_task and not config.data.train:
        raise ConfigError(f"{source}: data.train: a training file is required")
    check_across_sections(config, tables, source, stored)
    check_multi_task(config, source, stored)
    check_hierarchies(config, source)
    return config


def check_hierarchies(config: RunConfig, source: str) -> None:
    """Each task's hierarchy settings against its type and loss (`xtune.tasks.checks`)."""
    losses = table("losses")
    multi_label = [name for name in losses.names() if losses.get(name).fact("multi_label")]
    implicit = config.tasks is None
    for name, task in config.named_tasks().items():
        try:
            check_hierarchy(task, multi_label)
        except ValueError as error:
            where = "" if implicit else f"tasks.{name}."
            raise ConfigError(f"{source}: {where}{one_line(str(error))}") from None


def parse_tasks(
    raw: Any, shared_data: dict[str, Any], tables: dict[str, ComponentTable], source: str
) -> dict[str, TaskConfig]:
    """`tasks: {name: {type, data, head, loss, ...}}` -> TaskConfigs; a task set to null (e.g.
    by a grid row's `tasks.quora: null`) is left out. Each task type's rules are its class's
    (`xtune.tasks.checks`), found through the catalog."""
    task_types = table("tasks")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: tasks: expected a mapping of task names, got {short(raw)}")
    tasks = {}
    for name, task in raw.items():
        if task is None:
            continue
        path = f"tasks.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ConfigError(
                f"{source}: {path}: task names are letters, digits and _ (a letter first)"
            )
        if not isinstance(task, dict):
            raise ConfigError(f"{source}: {path}: expected a mapping, got {short(task)}")
        task = dict(task)
        if "hierarchy" in task:
            task["hierarchy"] = parse_section(
                HierarchyConfig, task["hierarchy"], f"{path}.hierarchy", source
            )
        if "mlm" in task:
            task["mlm"] = parse_section(MaskedLMConfig, task["mlm"], f"{path}.mlm", source)
        kind = task.get("type", "classification")
        if not isinstance(kind, str) or kind not in task_types:
            names = task_types.names()
            raise ConfigError(
                f"{source}: {path}.type: unknown task type {short(kind)}"
                f"{did_you_mean(kind, names)}; valid choices: {', '.join(names)}"
            )
        rules = resolve(task_types.get(kind).fact("rules"))
        data = deep_merge(shared_data, task.pop("data", None) or {})
        head = task.pop("head", "default")
        loss = task.pop("loss", None)
        values = dict(task)
        values["data"] = parse_section(DataConfig, data, f"{path}.data", source)
        values["head"] = parse_component(head, tables["head"], f"{path}.head", source)
        if loss is not None:
            score = rules.uses_score_loss(task.get("output", "classifier"))
            losses = table("score-losses") if score else tables["loss"]
            values["loss"] = parse_component(loss, losses, f"{path}.loss", source)
        fields = {f.name: f for f in dataclasses.fields(TaskConfig)}
        hints = typing.get_type_hints(TaskConfig)
        for key in list(values):
            if key not in fields:
                raise ConfigError(
                    f"{source}: unknown key '{path}.{key}'{did_you_mean(key, fields)}; "
                    f"valid keys: {', '.join(fields)}"
                )
            if key not in ("data", "head", "loss", "hierarchy", "mlm"):
                values[key] = check_type(values[key], hints[key], f"{path}.{key}", source)
        config = TaskConfig(**values)
        if not config.data.train:
            raise ConfigError(f"{source}: {path}.data.train: a training file is required")
        try:
            rules.check_config(config)
            if config.loss is not None and rules.uses_score_loss(config.output):
                output = table("score-losses").get(config.loss.name).fact("model_output")
                rules.check_loss_output(config.loss.name, output)
        except ValueError as error:
            raise ConfigError(f"{source}: {path}.{one_line(str(error))}") from None
        tasks[name] = config
    if not tasks:
        raise ConfigError(f"{source}: tasks: give at least one task")
    check_signature_names(tasks, source)
    return tasks


def check_signature_names(tasks: dict[str, TaskConfig], source: str) -> None:
    """No task may be named like one of the export's signatures (`xtune.tasks.signatures`)."""
    try:
        check_task_names({name: task.type for name, task in tasks.items()})
    except ValueError as error:
        raise ConfigError(f"{source}: tasks.{error}") from None


def check_multi_task(config: RunConfig, source: str, stored: bool = False) -> None:
    """The task sampler's settings, and each named task's by meaning."""
    training = config.training
    if training.sampler is not None:
        from xtune.tasks.samplers import get_sampler  # numpy: only when a sampler is set

        parse_component(training.sampler, table("samplers"), "training.sampler", source)
        check_sampler_order(get_sampler(training.sampler), len(config.named_tasks()), source)
    if config.tasks is None:
        return
    positions = None if stored else max_positions(config.encoder.to_dict())
    for name, task in config.tasks.items():
        if not 0 <= task.frozen_epochs < training.epochs:
            raise ConfigError(
                f"{source}: tasks.{name}.frozen_epochs: expected 0..{training.epochs - 1}, "
                f"fewer than training.epochs ({training.epochs}); got {task.frozen_epochs}"
            )
        if positions is not None and task.data.max_length > positions:
            raise ConfigError(
                f"{source}: tasks.{name}.data.max_length: {task.data.max_length} is more than "
                f"the encoder {config.encoder.name!r} has positions for ({positions})"
            )


def check_sampler_order(sampler: Any, num_tasks: int, source: str) -> None:
    """A sampler with a task `order` (sequential) names each of the run's tasks once."""
    task_order = getattr(sampler, "task_order", None)
    if task_order is None:
        return
    try:
        task_order(num_tasks)
    except ValueError as error:
        raise ConfigError(f"{source}: training.sampler.{one_line(str(error))}") from None


def parse_section(cls: type, raw: Any, path: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {path}: expected a mapping, got {short(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{path}.{key}'{did_you_mean(key, fields)}; "
                f"valid keys: {', '.join(fields)}"
            )
        if key == "labels" and isinstance(value, list):
            raise ConfigError(
                f"{source}: {path}.labels: a list names one 0/1 column per label; write it as "
                f"label_format: columns with label_columns: {short(value)} (labels: names the "
                "one column that holds each row's labels)"
            )
        nested = nested_section(hints[key])
        if nested is not None:  # data.prepare, data.prepare.boilerplate
            optional = type(None) in union_options(hints[key])
            if value is not None and not isinstance(value, dict):
                off = " or null (off)" if optional else ""
                raise ConfigError(
                    f"{source}: {path}.{key}: expected a mapping of its keys ({{}} for the "
                    f"defaults){off}, got {short(value)}"
                )
            if value is None and optional:
                values[key] = None  # a section that may be off
            else:
                values[key] = parse_section(nested, value, f"{path}.{key}", source)
            continue
        values[key] = check_type(value, hints[key], f"{path}.{key}", source)
        check_meaning(values[key], f"{path}.{key}", source)
    return cls(**values)


def nested_section(hint: Any) -> type | None:
    """The section dataclass a field holds (`data.prepare`), or None for a plain value."""
    for option in union_options(hint):
        if dataclasses.is_dataclass(option) and option is not ComponentSpec:
            return option
    return None


def choices_of(key: str) -> tuple[Any, ...] | None:
    if key == "training.metric":
        return tuple(METRIC_DIRECTIONS)
    if key == "training.tune_thresholds":
        return OBJECTIVES
    if key == "training.decision_rule":
        return DECISION_RULES
    if key == "training.jit_compile":
        return ("auto", True, False, "optimizer")
    if key == "data.trim_vocabulary":
        return ("auto", True, False)
    return CHOICES.get(key)


def check_meaning(value: Any, path: str, source: str) -> None:
    """Choices, ranges and non-empty strings of one (type-checked) section setting."""
    if value is None:
        return  # allowed by the type: "not set"
    path_in_task = path
    path = re.sub(r"^tasks\.[^.]+\.", "", path)  # a task's `data` checks like `data`
    choices = choices_of(path)
    if choices and value not in choices:
        raise ConfigError(
            f"{source}: {path_in_task}: {short(value)} is not one of: "
            f"{', '.join(format_choice(c) for c in choices)}{did_you_mean(value, choices)}"
        )
    if path in RANGES:
        try:
            check_number(path_in_task, value, integer=isinstance(value, int), **RANGES[path])
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
    for item in value if path in ITEM_RANGES else ():
        try:
            check_number(path_in_task, item, **ITEM_RANGES[path])
        except ValueError:
            expected = interval(**ITEM_RANGES[path])
            raise ConfigError(
                f"{source}: {path_in_task}: expected numbers{expected}, got {short(item)}"
            ) from None
    if path in NON_EMPTY and not value:
        raise ConfigError(f"{source}: {path_in_task}: must not be empty")


def format_choice(choice: Any) -> str:
    return str(choice).lower() if isinstance(choice, bool) else str(choice)


# `training.report_to`: the tracking tools a run can log to (xtune.training.tracking).
REPORTERS = ("tensorboard", "mlflow")


def check_report_to(report_to: list[str], mlflow_uri: str, source: str) -> None:
    for name in report_to:
        if name not in REPORTERS:
            raise ConfigError(
                f"{source}: training.report_to: unknown tool {short(name)}"
                f"{did_you_mean(str(name), list(REPORTERS))}; valid: {', '.join(REPORTERS)}"
            )
    needed = ("mlflow",) if "mlflow" in report_to else ()
    if needed and mlflow_uri.startswith("sqlite:"):
        needed += ("sqlalchemy", "alembic")
    missing = [module for module in needed if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(
            f"{source}: training.report_to: mlflow needs the MLflow client and its store "
            f"({', '.join(missing)} not installed): pip install 'xtune[mlflow]'"
        )


def check_across_sections(
    config: RunConfig, tables: dict[str, ComponentTable], source: str, stored: bool = False
) -> None:
    """Settings that are only wrong together, or against the encoder's files (unless
    `stored`: a run folder's config, see `parse_run_config`)."""
    if not stored:
        check_encoder_files(config.encoder, source)
    positions = None if stored else max_positions(config.encoder.to_dict())
    if positions is not None and config.data.max_length > positions:
        raise ConfigError(
            f"{source}: data.max_length: {config.data.max_length} is more than the encoder "
            f"{config.encoder.name!r} has positions for ({positions}); use at most {positions}"
        )
    check_layer_counts(config, tables, source)
    check_data_settings(config, source)
    check_report_to(config.training.report_to, config.tracking.mlflow_uri, source)
    check_distribution(config, source)
    finetune, epochs = config.finetune, config.training.epochs
    if finetune.frozen_epochs >= epochs:
        raise ConfigError(
            f"{source}: finetune.frozen_epochs: {finetune.frozen_epochs} must be fewer than "
            f"training.epochs ({epochs})"
        )
    if finetune.lora_rank is not None and finetune.freeze_encoder:
        raise ConfigError(
            f"{source}: finetune: lora_rank and freeze_encoder exclude each other (LoRA trains "
            "adapters inside the encoder)"
        )
    check_parameter_efficient(finetune, source)
    threshold = tables["loss"].get(config.loss.name).fact("default_threshold")
    if config.training.report_thresholds and threshold is None:
        raise ConfigError(
            f"{source}: training.report_thresholds: the loss {config.loss.name!r} predicts the "
            "top-1 label and has no per-label thresholds; remove report_thresholds"
        )
    check_decision_rule(config, threshold, source)


def check_data_settings(config: RunConfig, source: str) -> None:
    """Data settings that are only wrong together, in every task's data."""
    for name, task in config.named_tasks().items():
        where = "data" if config.tasks is None else f"tasks.{name}.data"
        data = task.data
        if data.truncation == "head_tail_pair" and data.text_pair:
            raise ConfigError(
                f"{source}: {where}.truncation: head_tail_pair makes the pair from "
                f"{where}.text alone (its head, then its tail), but {where}.text_pair is set "
                f"({data.text_pair!r}); use head_tail to truncate each of two fields, or "
                "remove text_pair"
            )


def check_distribution(config: RunConfig, source: str) -> None:
    """`training.distribution: mirrored` only for runs whose steps are all of one kind."""
    blocker = mirroring_blocker(config)
    if config.training.distribution == "mirrored" and blocker is not None:
        raise ConfigError(f"{source}: training.distribution: mirrored: {blocker}")


def check_decision_rule(config: RunConfig, default_threshold: float | None, source: str) -> None:
    """`training.decision_rule: tuned` needs thresholds to serve (a config without `tasks:`;
    a named task without them serves its own rule); `default_threshold`: the loss's (None for
    a top-1 loss)."""
    training = config.training
    if training.decision_rule != "tuned" or config.tasks is not None:
        return
    if default_threshold is None:
        raise ConfigError(
            f"{source}: training.decision_rule: tuned: the loss {config.loss.name!r} predicts "
            "the top-1 label and has no thresholds to tune; use decision_rule: default"
        )
    if objective_for(training.tune_thresholds, training.metric) is None:
        raise ConfigError(
            f"{source}: training.decision_rule: tuned: no thresholds are tuned for "
            f"training.metric {training.metric!r} with tune_thresholds: "
            f"{training.tune_thresholds or 'null'}; set tune_thresholds to one of "
            "per_label_f1, micro_f1, subset_accuracy, samples_f1, hamming_loss"
        )


def check_parameter_efficient(finetune: FinetuneConfig, source: str) -> None:
    """Prompt, prefix and BitFit train parts of the encoder: not with a frozen encoder."""
    for key in ("prompt_length", "prefix_length", "bitfit"):
        value = getattr(finetune, key)
        if value not in (None, False) and finetune.freeze_encoder:
            raise ConfigError(
                f"{source}: finetune: {key} and freeze_encoder exclude each other ({key} "
                "trains part of the encoder; the rest is frozen already); use frozen_epochs "
                "for a head-only first stage"
            )


def check_layer_counts(config: RunConfig, tables: dict[str, ComponentTable], source: str) -> None:
    """Settings that count transformer layers are at most the encoder's (when it can tell)."""
    layers = num_layers(config.encoder.to_dict())
    if layers is None:
        return
    head = config.head
    default = tables["head"].get(head.name).default("last_layers")
    counts = {
        "finetune.train_top_layers": config.finetune.train_top_layers,
        "finetune.reinit_top_layers": config.finetune.reinit_top_layers,
        "head.last_layers": head.kwargs.get("last_layers", default),
    }
    for key, value in counts.items():
        if isinstance(value, int) and value > layers:
            raise ConfigError(
                f"{source}: {key}: {value} is more than the encoder {config.encoder.name!r} "
                f"has layers ({layers})"
            )


def check_encoder_files(encoder: ComponentSpec, source: str) -> None:
    """The encoder's folder (`path`) or vocabulary file exists: found now, not after setup."""
    for key, kind in (("path", "folder"), ("vocabulary", "file")):
        value = encoder.kwargs.get(key)
        if not isinstance(value, str):
            continue
        file = Path(value).expanduser()
        if not (file.is_dir() if kind == "folder" else file.is_file()):
            raise ConfigError(f"{source}: encoder.{key}: {file}: {kind} not found")


def union_options(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def check_type(value: Any, hint: Any, path: str, source: str) -> Any:
    """Type check with int->float promotion: numbers finite and in range, lists item by item."""
    options = union_options(hint)
    for option in options:
        matched, result = match_type(value, option, path, source)
        if matched:
            return result
    expected = " or ".join(type_name(o) for o in options)
    hint_text = ""
    if isinstance(value, str) and any(o in (int, float) for o in options):
        try:
            float(value)
            hint_text = " (a quoted string: write the number without quotes)"
        except ValueError:
            pass
    raise ConfigError(f"{source}: {path}: expected {expected}, got {short(value)}{hint_text}")


def match_type(value: Any, option: Any, path: str, source: str) -> tuple[bool, Any]:
    """(whether `value` is of type `option`, the value to keep)."""
    origin = typing.get_origin(option) or option
    if option is Any:
        return True, value
    if option is type(None):
        return value is None, None
    if origin is bool or isinstance(value, bool):  # YAML's true/false are not numbers
        return origin is bool and isinstance(value, bool), value
    if origin is float and isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{source}: {path}: expected a finite number, got {short(value)}")
        return True, number
    if origin is int and isinstance(value, int):
        if abs(value) > MAX_INTEGER and path not in RANGES:  # those say their own range
            raise ConfigError(f"{source}: {path}: {short(value)} is out of range")
        return True, value
    if origin is str:
        return isinstance(value, str), value
    if origin in (list, tuple, collections.abc.Sequence) and isinstance(value, list):
        item = (typing.get_args(option) or (Any,))[0]
        return True, [check_type(v, item, f"{path}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        return isinstance(value, dict), value
    return False, None


def type_name(option: Any) -> str:
    if option is type(None):
        return "null"
    if typing.get_origin(option) is None and hasattr(option, "__name__"):
        return option.__name__
    return str(option).replace("collections.abc.", "").replace("typing.", "")


def parse_component(raw: Any, registry: Any, path: str, source: str) -> ComponentSpec:
    """A component section (a name, or a mapping with `name`) checked against `registry`: a
    catalog table, or a live registry (`ComponentTable.of` describes it the same way)."""
    described = ComponentTable.of(registry)
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(
            f"{source}: {path}: expected a name or a mapping with 'name', got {short(raw)}"
        )
    kwargs = dict(raw)
    name = kwargs.pop("name")
    kind, names = described.kind, described.names()
    if not isinstance(name, str) or name not in described:
        raise ConfigError(
            f"{source}: {path}.name: unknown {kind} {short(name)}"
            f"{did_you_mean(name, names)}; valid choices: {', '.join(names)}"
        )
    component = described.get(name)
    accepted = component.accepted()
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"{source}: unknown key '{path}.{key}' for {kind} {name!r}"
                f"{did_you_mean(key, accepted)}; "
                f"valid keys: {', '.join(sorted(accepted)) or '(none)'}"
            )
    missing = sorted(component.required() - set(kwargs))
    if missing:
        raise ConfigError(f"{source}: {path}: {kind} {name!r} needs {missing[0]!r}")
    hints = component.hints()
    for key, value in kwargs.items():
        check_type(value, hints.get(key, Any), f"{path}.{key}", source)
    try:
        component.check(kwargs)
    except ValueError as error:
        raise ConfigError(f"{source}: {path}.{one_line(str(error))}") from None
    return ComponentSpec(name, kwargs)
