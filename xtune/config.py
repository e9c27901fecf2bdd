"""YAML -> typed, frozen run configs; unknown keys and names are errors that list the valid ones."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override does not match the schema."""


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` and `5e-5` as floats (YAML 1.1 wants `1.0e-3`)."""


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


@dataclass(frozen=True)
class ComponentSpec:
    """A registry component picked by short name, with its keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


@dataclass(frozen=True)
class DataConfig:
    """Where the texts and labels are, how to read them, and how to fit them into the encoder."""

    train: str = ""
    dev: str | None = None
    test: str | None = None
    root: str = "."  # relative file paths are resolved against this folder
    format: str = "auto"  # auto | csv | tsv | jsonl | xlsx
    columns: list[str] | None = None  # names for header-less files
    text: str = "text"
    text_pair: str | None = None
    labels: str | None = "labels"
    label_format: str = "delimited"  # delimited | list | columns
    label_separator: str = "|"
    label_columns: list[str] | None = None  # for label_format: columns
    label_names: str | list[str] | None = None  # file (one name a line) or list
    labels_are_indices: bool = False  # label cells hold 0-based ids into label_names
    dev_fraction: float = 0.2  # seeded split of `train` when `dev` is not given
    split_seed: int = 0
    max_train_rows: int | None = None  # seeded label-stratified subset of train (quick grids)
    max_length: int = 128
    truncation: str = "head"  # head | tail | head_tail
    head_tokens: int = 64  # head_tail: first k tokens kept, the rest of the budget from the end
    bad_rows: str = "error"  # error | skip
    unknown_labels: str = "error"  # dev/test labels not in train: error | skip_rows | ignore_labels
    sheet: str | None = None  # XLSX sheet to read (default: the first)
    encoding: str = "utf-8"  # text encoding of CSV/TSV/JSONL files (e.g. gb18030)
    padding: str = "bucket"  # bucket | dynamic | fixed
    cache_dir: str | None = ".cache/xtune"


@dataclass(frozen=True)
class TrainingConfig:
    """How long and how to train, what to select on, where the run folder goes."""

    epochs: int = 5
    batch_size: int = 32
    eval_batch_size: int = 64
    seed: int = 0
    metric: str = "subset_accuracy"  # the "val-acc" of reports
    early_stopping_patience: int | None = None
    output_dir: str = "runs"
    run_name: str | None = None
    mixed_precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    jit_compile: str | bool = "auto"
    steps_per_epoch: int | None = None  # cap for smoke tests and benchmarks
    save_weights: bool = True
    tune_thresholds: str | None = "per_label_f1"  # per_label_f1 | micro_f1 | None
    # Also score dev (and test) with these fixed thresholds on the per-label scores, reported
    # as per-label P/R/F1 and their macro means (the GoEmotions paper uses [0.3]).
    report_thresholds: list[float] = field(default_factory=list)
    verbose: int = 1


@dataclass(frozen=True)
class FinetuneConfig:
    """Which encoder weights train, and how (`xtune.training.freezing`, `xtune.training.lora`)."""

    freeze_encoder: bool = False  # train the head only
    freeze_embeddings: bool = False
    train_top_layers: int | None = None  # train only the top N transformer layers (+ pooler)
    reinit_top_layers: int = 0  # re-initialize the top N transformer layers and the pooler
    frozen_epochs: int = 0  # first train the head alone for this many epochs, then the rest
    lora_rank: int | None = None  # LoRA on `lora_targets`; the encoder's own weights freeze
    lora_alpha: float | None = None  # LoRA delta scale is alpha / rank; default alpha = rank
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"])


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs."""

    data: DataConfig
    encoder: ComponentSpec = ComponentSpec("minilm-l6")
    head: ComponentSpec = ComponentSpec("default")
    loss: ComponentSpec = ComponentSpec("bce")
    optimizer: ComponentSpec = ComponentSpec("adamw", {"learning_rate": 5e-5})
    schedule: ComponentSpec = ComponentSpec("constant")
    adversarial: ComponentSpec = ComponentSpec("none")
    finetune: FinetuneConfig = FinetuneConfig()
    training: TrainingConfig = TrainingConfig()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ComponentSpec):
                out[f.name] = value.to_dict()
            else:
                out[f.name] = dataclasses.asdict(value)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


SECTIONS = {
    "data": DataConfig,
    "finetune": FinetuneConfig,
    "training": TrainingConfig,
}
COMPONENT_SECTIONS = ("encoder", "head", "loss", "optimizer", "schedule", "adversarial")
CHOICES = {
    "data.format": ("auto", "csv", "tsv", "jsonl", "xlsx"),
    "data.label_format": ("delimited", "list", "columns"),
    "data.truncation": ("head", "tail", "head_tail"),
    "data.bad_rows": ("error", "skip"),
    "data.unknown_labels": ("error", "skip_rows", "ignore_labels"),
    "data.padding": ("bucket", "dynamic", "fixed"),
    "training.mixed_precision": ("auto", "float32", "mixed_bfloat16", "mixed_float16"),
}


def registries() -> dict[str, Any]:
    """The registry behind each component section (imported lazily: they pull in TensorFlow)."""
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


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_run_config(
    path: str | Path, overrides: list[str] | dict[str, Any] | None = None
) -> RunConfig:
    """Read a run config file, apply `key=value` overrides, validate."""
    raw = load_yaml(path)
    if "base" in raw and isinstance(raw["base"], str):
        base = load_yaml(Path(path).parent / raw.pop("base"))
        raw = deep_merge(base, raw)
    raw = apply_overrides(raw, overrides or {}, source=str(path))
    return parse_run_config(raw, source=str(path))


def parse_override(text: str) -> tuple[str, Any]:
    """`training.epochs=3` -> ("training.epochs", 3); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. training.epochs=3")
    key, value = text.split("=", 1)
    return key.strip(), yaml_load(value) if value.strip() else None


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | dict[str, Any], source: str = "overrides"
) -> dict[str, Any]:
    """Set dotted keys (`head.units=[256]`) on a copy of a raw config dict."""
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if isinstance(child, str) and parts[0] in COMPONENT_SECTIONS:
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: cannot set {dotted!r}: {part!r} is not a section")
            node[part] = child
            node = child
        if len(parts) == 2 and parts[0] in COMPONENT_SECTIONS and parts[1] == "name":
            # Switching component keeps none of the old component's arguments.
            node.clear()
        node[parts[-1]] = value
    return raw


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


def parse_run_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a raw dict into a `RunConfig`, with errors naming `source` and the key path."""
    known = set(SECTIONS) | set(COMPONENT_SECTIONS)
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key {key!r}; valid top-level keys: {', '.join(sorted(known))}"
            )
    if "data" not in raw:
        raise ConfigError(f"{source}: missing required section 'data'")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        if name in raw:
            kwargs[name] = parse_section(cls, raw[name], name, source)
    regs = registries()
    for name in COMPONENT_SECTIONS:
        if name in raw:
            kwargs[name] = parse_component(raw[name], regs[name], name, source)
    config = RunConfig(**kwargs)
    if not config.data.train:
        raise ConfigError(f"{source}: data.train: a training file is required")
    return config


def parse_section(cls: type, raw: Any, path: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {path}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{path}.{key}'; valid keys: {', '.join(fields)}"
            )
        values[key] = check_type(value, hints[key], f"{path}.{key}", source)
        choices = CHOICES.get(f"{path}.{key}")
        if choices and values[key] not in choices:
            raise ConfigError(
                f"{source}: {path}.{key}: {value!r} is not one of: {', '.join(choices)}"
            )
    return cls(**values)


def check_type(value: Any, hint: Any, path: str, source: str) -> Any:
    """Light type check with int->float promotion; enough to catch YAML typos early."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return None
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is bool and isinstance(value, bool):
            return value
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, list):
            return list(value)
        if option is Any:
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{source}: {path}: expected {expected}, got {value!r}")


def parse_component(raw: Any, registry: Any, path: str, source: str) -> ComponentSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(
            f"{source}: {path}: expected a name or a mapping with 'name', got {raw!r}"
        )
    kwargs = dict(raw)
    name = kwargs.pop("name")
    if name not in registry:
        raise ConfigError(
            f"{source}: {path}.name: unknown {registry.kind} {name!r}; "
            f"valid choices: {', '.join(registry.names())}"
        )
    accepted = accepted_arguments(registry.get(name))
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"{source}: unknown key '{path}.{key}' for {registry.kind} {name!r}; "
                f"valid keys: {', '.join(sorted(accepted)) or '(none)'}"
            )
    return ComponentSpec(name, kwargs)


INTERNAL_ARGUMENTS = {"self", "name", "dtype", "reduction", "trainable"}


def accepted_arguments(builder: Any) -> set[str]:
    """Keyword arguments a registered builder takes from YAML.

    For a class, the named arguments of each `__init__` up its MRO, as long as the one below
    passes `**kwargs` on (framework bases like `keras.layers.Layer` are not xtune settings).
    """
    if not inspect.isclass(builder):
        return named_parameters(builder)[0]
    accepted: set[str] = set()
    for cls in builder.__mro__:
        if cls.__module__.split(".")[0] != "xtune" or "__init__" not in vars(cls):
            continue
        names, passes_on = named_parameters(cls.__init__)
        accepted |= names
        if not passes_on:
            break
    return accepted


def named_parameters(function: Any) -> tuple[set[str], bool]:
    params = inspect.signature(function).parameters.values()
    names = {
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in INTERNAL_ARGUMENTS
        and not p.name.startswith("_")
    }
    return names, any(p.kind is p.VAR_KEYWORD for p in params)
