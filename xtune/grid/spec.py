"""`GridSpec`: a grid YAML file (base + variants + axes + seeds) expanded into validated runs.

A grid file:

```yaml
name: demo                        # default: the file name without .yaml
output: reports/demo              # results folder; default reports/<name>
base: ../configs/appeal.yaml      # a run config file, or an inline run config mapping
set: {data.root: ../data}         # dotted overrides of the base, for every run
vars:                             # values that `${vars.NAME}` strings are replaced with
  encoder: {name: minilm-l6}
epochs: 3                         # training.epochs of every run (the grid's test standard)
seeds: [0, 1, 2]                  # or: repeats: 3 (+ seed: 0, the first seed)
variants:                         # ordered rows of dotted overrides; the first is the baseline
  baseline: {}
  lr 5e-5: {optimizer.learning_rate: 5e-5}
  warm-up: {schedule: {name: linear, warmup_ratio: 0.1}}
grid:                             # axes, expanded as a cartesian product (times the variants)
  training.batch_size: [16, 32]
```

Every override is applied to the base and the result validated with `parse_run_config`, so a
typo fails before any training and the message names the file, the row and the key.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtune.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    deep_merge,
    load_yaml,
    parse_override,
    parse_run_config,
    parse_yaml_text,
    read_yaml_text,
)
from xtune.config_schema import NON_RESULT_KEYS, without_non_result_keys  # noqa: F401 (re-exported)

GRID_KEYS = (
    "name",
    "description",
    "output",
    "base",
    "set",
    "vars",
    "epochs",
    "seeds",
    "repeats",
    "seed",
    "variants",
    "grid",
)


VARIABLE = re.compile(r"\$\{vars\.([A-Za-z_][A-Za-z0-9_]*)\}")
BASELINE_CELL = "base"


def load_grid_yaml(path: Path) -> dict[str, Any]:
    """The grid file's mapping; a key repeated in one mapping is an error (rows are keys)."""
    raw = parse_yaml_text(read_yaml_text(path, "grid file"), path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


@dataclass(frozen=True)
class GridCell:
    """One row of the report: a variant, possibly crossed with one value of each grid axis."""

    index: int
    name: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class PlannedRun:
    """One training run of the grid: a cell at one seed, with its validated config."""

    run_id: str
    cell: GridCell
    seed: int
    config: RunConfig


@dataclass
class GridSpec:
    """A validated grid: its cells, seeds and the runs they expand into (cells x seeds)."""

    path: Path
    name: str
    output: Path
    cells: list[GridCell]
    seeds: list[int]
    runs: list[PlannedRun]
    shared_overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def select(self, only: list[str] | None) -> list[PlannedRun]:
        """The runs of the cells named in `only` (all runs when it is empty)."""
        if not only:
            return list(self.runs)
        names = [cell.name for cell in self.cells]
        unknown = [name for name in only if name not in names]
        if unknown:
            raise ConfigError(
                f"{self.path}: --only {', '.join(map(repr, unknown))}: no such row; "
                f"rows: {', '.join(map(repr, names))}"
            )
        return [run for run in self.runs if run.cell.name in only]


# ---------------------------------------------------------------- loading


def load_grid(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> GridSpec:
    """Read a grid file, apply `--set` overrides (`vars.NAME=...` sets a variable), validate."""
    path = Path(path)
    raw = load_grid_yaml(path)
    unknown = [key for key in raw if key not in GRID_KEYS]
    if unknown:
        raise ConfigError(
            f"{path}: unknown grid key {unknown[0]!r}; valid keys: {', '.join(GRID_KEYS)}"
        )
    if isinstance(overrides, list):
        overrides = dict(parse_override(text) for text in overrides)
    overrides = dict(overrides or {})
    variables = dict(mapping_of(raw, "vars", path))
    for key in [k for k in overrides if k.startswith("vars.")]:
        variables[key.removeprefix("vars.")] = overrides.pop(key)

    name = str(raw.get("name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{path}: name {name!r}: use letters, digits, '_', '-' or '.'")
    base = substitute(load_base(raw, path), variables, path, "base")
    shared = substitute(mapping_of(raw, "set", path), variables, path, "set")
    if "epochs" in raw:
        epochs = raw["epochs"]
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ConfigError(f"{path}: epochs: expected a positive integer, got {epochs!r}")
        shared = {"training.epochs": epochs, **shared}
    shared.update(overrides)
    base = apply_overrides(base, shared, source=f"{path}: set/--set")
    base_config = parse_run_config(base, source=f"{path}: base")

    cells = expand_cells(raw, variables, path)
    seeds = seeds_of(raw, base_config.training.seed, path)
    runs = plan_runs(base, cells, seeds, path)
    output = Path(raw["output"]) if raw.get("output") else Path("reports") / name
    return GridSpec(
        path=path,
        name=name,
        output=output,
        cells=cells,
        seeds=seeds,
        runs=runs,
        shared_overrides=shared,
        description=str(raw.get("description") or ""),
    )


def mapping_of(raw: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key}: expected a mapping, got {value!r}")
    return value


def load_base(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """`base: file.yaml`, or an inline run config (which may itself say `base: file.yaml`)."""
    base = raw.get("base")
    if base is None:
        raise ConfigError(f"{path}: missing 'base' (a run config file or an inline mapping)")
    if isinstance(base, str):
        base = {"base": base}
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: base: expected a file name or a mapping, got {base!r}")
    folder, seen = path.parent, {path.resolve()}
    while isinstance(base.get("base"), str):
        file = folder / base["base"]
        if file.resolve() in seen:
            raise ConfigError(f"{path}: base: {file} includes itself")
        seen.add(file.resolve())
        parent = load_yaml(file)
        base = deep_merge(parent, {k: v for k, v in base.items() if k != "base"})
        folder = file.parent
    return base


def substitute(value: Any, variables: dict[str, Any], path: Path, where: str) -> Any:
    """Replace `${vars.NAME}`: a whole-string reference takes the variable's value as is."""
    if isinstance(value, dict):
        return {k: substitute(v, variables, path, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables, path, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(name: str) -> Any:
        if name not in variables:
            raise ConfigError(
                f"{path}: {where}: ${{vars.{name}}} is not defined; "
                f"vars: {', '.join(variables) or '(none)'}"
            )
        return variables[name]

    whole = VARIABLE.fullmatch(value)
    if whole:
        return copy.deepcopy(lookup(whole.group(1)))
    return VARIABLE.sub(lambda match: str(lookup(match.group(1))), value)


# ---------------------------------------------------------------- expansion


def expand_cells(raw: dict[str, Any], variables: dict[str, Any], path: Path) -> list[GridCell]:
    """Variants (in file order) times the cartesian product of the grid axes."""
    variants = mapping_of(raw, "variants", path)
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, overrides in variants.items():
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise ConfigError(
                f"{path}: variant {name!r}: expected a mapping of dotted keys to values "
                f"(use {{}} for the baseline), got {overrides!r}"
            )
        rows.append((str(name), substitute(overrides, variables, path, f"variants.{name}")))
    if not rows:
        rows = [(BASELINE_CELL, {})]

    axes = mapping_of(raw, "grid", path)
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{key}: expected a non-empty list of values")
    axes = {key: substitute(values, variables, path, f"grid.{key}") for key, values in axes.items()}
    points = list(itertools.product(*axes.values())) if axes else [()]

    cells = []
    for row_name, row_overrides in rows:
        for point in points:
            axis_overrides = dict(zip(axes, point, strict=True))
            clash = sorted(set(row_overrides) & set(axis_overrides))
            if clash:
                raise ConfigError(
                    f"{path}: variant {row_name!r} and the grid both set {clash[0]!r}"
                )
            name = cell_name(row_name if variants else None, axis_overrides)
            cells.append(GridCell(len(cells), name, {**row_overrides, **axis_overrides}))
    return cells


def cell_name(row: str | None, axis_overrides: dict[str, Any]) -> str:
    parts = [row] if row else []
    parts += [f"{key.split('.')[-1]}={format_value(v)}" for key, v in axis_overrides.items()]
    return ", ".join(parts) or BASELINE_CELL


def format_value(value: Any) -> str:
    """Short, readable rendering of a setting's value (tables, cell names)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def seeds_of(raw: dict[str, Any], base_seed: int, path: Path) -> list[int]:
    if "seeds" in raw and "repeats" in raw:
        raise ConfigError(f"{path}: give 'seeds' (a list) or 'repeats' (+ 'seed'), not both")
    if "seeds" in raw:
        seeds = raw["seeds"]
        if (
            not isinstance(seeds, list)
            or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        ):
            raise ConfigError(f"{path}: seeds: expected a non-empty list of integers")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{path}: seeds: {seeds} repeats a seed")
        return list(seeds)
    first = raw.get("seed", base_seed)
    repeats = raw.get("repeats", 1)
    for key, value in (("repeats", repeats), ("seed", first)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected an integer, got {value!r}")
    if repeats < 1:
        raise ConfigError(f"{path}: repeats: expected at least 1, got {repeats}")
    return [first + i for i in range(repeats)]


def plan_runs(
    base: dict[str, Any], cells: list[GridCell], seeds: list[int], path: Path
) -> list[PlannedRun]:
    """Validate every cell's config and give each (cell, seed) its run id."""
    runs = []
    owner_of_config: dict[str, str] = {}
    for cell in cells:
        config = validate_cell(base, cell, path)
        fingerprint = run_id(with_seed(config, 0), seed=None)
        if fingerprint in owner_of_config:
            raise ConfigError(
                f"{path}: rows {owner_of_config[fingerprint]!r} and {cell.name!r} resolve to "
                "the same config; remove one or make them differ"
            )
        owner_of_config[fingerprint] = cell.name
        for seed in seeds:
            seeded = with_seed(config, seed)
            runs.append(PlannedRun(run_id(seeded, seed), cell, seed, seeded))
    return runs


def validate_cell(base: dict[str, Any], cell: GridCell, path: Path) -> RunConfig:
    source = f"{path}: variant {cell.name!r}"
    training = cell.overrides.get("training")
    if "training.seed" in cell.overrides or (isinstance(training, dict) and "seed" in training):
        raise ConfigError(f"{source}: training.seed is set per run from the grid's seeds/repeats")
    try:
        return parse_run_config(apply_overrides(base, cell.overrides, source), source)
    except ConfigError as error:
        culprit = failing_override(base, cell, source)
        if culprit is None:
            raise
        message = strip_source(error, source)
        raise ConfigError(f"{source}: override {culprit!r}: {message}") from None


def failing_override(base: dict[str, Any], cell: GridCell, source: str) -> str | None:
    """The override after which a cell's config first fails (applied in order), to name it."""
    applied: dict[str, Any] = {}
    for key, value in cell.overrides.items():
        applied[key] = value
        try:
            parse_run_config(apply_overrides(base, applied, source), source)
        except ConfigError:
            return key
    return None


def strip_source(error: ConfigError, source: str) -> str:
    return str(error).removeprefix(f"{source}: ")


def with_seed(config: RunConfig, seed: int) -> RunConfig:
    raw = config.to_dict()
    raw["training"]["seed"] = seed
    return parse_run_config(raw, source="seeded run")


# ---------------------------------------------------------------- run ids


def result_relevant_config(config: RunConfig) -> dict[str, Any]:
    """The resolved config without the settings in `NON_RESULT_KEYS`."""
    return without_non_result_keys(config.to_dict())


def run_id(config: RunConfig, seed: int | None) -> str:
    """Stable 12-hex-digit hash of the resolved config and the seed."""
    payload = json.dumps(
        {"config": result_relevant_config(config), "seed": seed},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
