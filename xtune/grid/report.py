"""`write_report`: results.jsonl -> reports/<grid>.md (cells, seeds, failures) + a curves plot,
or the table of cells alone as CSV or LaTeX."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtune.config import ConfigError
from xtune.grid.results_file import ResultsFile
from xtune.grid.spec import NON_RESULT_KEYS, format_value
from xtune.grid.storage import write_atomically, write_text_atomically

PLOT_FILE = "dev_curves.png"
MAX_SETTING_COLUMNS = 5  # more varying settings than this go into one "changes" column
ERROR_CHARACTERS = 200
# Readable column names for settings whose dotted key says little on its own.
SETTING_NAMES = {
    "optimizer.learning_rate": "learning rate",
    "optimizer.head_learning_rate": "head learning rate",
    "optimizer.weight_decay": "weight decay",
}
# Sections whose name adds nothing in front of their keys (`data.max_length` -> "max length").
SILENT_SECTIONS = ("data", "training")
FORMATS = {"md": ".md", "csv": ".csv", "latex": ".tex"}
CONFIDENCE = 0.95


@dataclass
class Cell:
    """A grid row and its runs, in the order the grid listed them."""

    index: int
    name: str
    config: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok_runs(self) -> list[dict[str, Any]]:
        return sorted((r for r in self.runs if r["status"] == "ok"), key=lambda r: r["seed"])

    def values(self, metric: str) -> list[float]:
        return [float(run["best"][metric]) for run in self.ok_runs]


def write_report(
    results_dir: str | Path,
    output: str | Path | None = None,
    baseline: str | None = None,
    *,
    format: str = "md",
    ci: bool = False,
    test_per_row: bool = False,
) -> str:
    """Write the report of a grid's results folder; returns its path.

    `baseline` names the row that Δ and Welch p compare against (default: the grid's first
    row); it is listed first. `format`: `md` the whole report (and the curves plot), `csv` and
    `latex` the table of cells alone (default output `reports/<grid>.csv` / `.tex`). `ci` adds
    a 95% confidence interval of each row's mean. `test_per_row` adds each row's test score
    to the cost table (for a test set that is a second held-out set, as MNLI's mismatched
    dev; rows are still chosen on dev). A seed that a row holds more than once (lines
    appended by another run of the grid) counts once, its last line; that is a warning, printed
    and written in the report.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown report format {format!r}; valid: {', '.join(FORMATS)}")
    results_dir = Path(results_dir)
    results = ResultsFile(results_dir)
    if not results.path.is_file():
        raise FileNotFoundError(f"{results.path}: no results (run `xtune grid` first)")
    content = results.read()
    if not content.lines:
        raise ConfigError(f"{results.path}: no complete result lines yet")
    if output is None:
        name = results_dir.resolve().name + FORMATS[format]
        output = results_dir.resolve().parent / name
    output = Path(output)
    runs, warnings = last_line_per_seed(content.lines)
    for warning in warnings:
        print(f"xtune report: warning: {warning}", file=sys.stderr)
    cells = group_cells(runs)
    if baseline is not None:
        cells = baseline_first(cells, baseline, results.path)
    metric = common_value(content.lines, "metric")
    if format == "csv":
        write_text_atomically(output, csv_text(cell_table(cells, metric, ci)))
        return str(output)
    if format == "latex":
        text = latex_text(cell_table(cells, metric, ci), cells, metric, warnings)
        write_text_atomically(output, text)
        return str(output)
    plot = results_dir / PLOT_FILE
    caption = plot_curves(cells, metric, plot)
    lines = render(
        cells, metric, results.path, content.incomplete_tail, output.parent, warnings, ci
    )
    if cost := cost_section(cells, metric, test_per_row):
        at = lines.index("## Per seed") - 1
        lines[at:at] = cost
    if caption:
        link = Path(os.path.relpath(plot.resolve(), output.resolve().parent)).as_posix()
        lines += ["", "## Dev curves", "", f"![{caption}]({link})", ""]
    write_text_atomically(output, "\n".join(lines).rstrip() + "\n")
    return str(output)


def last_line_per_seed(lines: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One result per (row, seed), the last in the file, and a warning per seed that a row
    holds under more than one run id: pooling both would count one seed twice (a retried run
    keeps its run id and is no warning)."""
    last: dict[tuple[str, Any], dict[str, Any]] = {}
    run_ids: dict[tuple[str, Any], list[str]] = {}
    for line in lines:
        key = (line["row"], line["seed"])
        last[key] = line
        ids = run_ids.setdefault(key, [])
        if line["run_id"] not in ids:
            ids.append(line["run_id"])
    warnings = [
        f"row {row!r} holds seed {seed} {len(ids)} times (run ids "
        f"{', '.join(ids)}); only the last, {last[row, seed]['run_id']}, is counted"
        for (row, seed), ids in run_ids.items()
        if len(ids) > 1
    ]
    return list(last.values()), warnings


def baseline_first(cells: list[Cell], baseline: str, source: Path) -> list[Cell]:
    """The cells with the row named `baseline` moved to the front."""
    names = [cell.name for cell in cells]
    if baseline not in names:
        raise ConfigError(f"{source}: --baseline: no row {baseline!r}; rows: {', '.join(names)}")
    chosen = names.index(baseline)
    return [cells[chosen], *cells[:chosen], *cells[chosen + 1 :]]


def group_cells(lines: list[dict[str, Any]]) -> list[Cell]:
    cells: dict[str, Cell] = {}
    for line in sorted(lines, key=lambda line: (line.get("row_index", 0), line["seed"])):
        if line["row"] not in cells:
            index = line.get("row_index", len(cells))
            cells[line["row"]] = Cell(index, line["row"], line["config"])
        cells[line["row"]].runs.append(line)
    return sorted(cells.values(), key=lambda cell: cell.index)


def common_value(lines: list[dict[str, Any]], key: str) -> Any:
    values = {line[key] for line in lines}
    if len(values) != 1:
        raise ConfigError(f"results disagree on {key!r}: {sorted(values)}; report one metric")
    return values.pop()


# ---------------------------------------------------------------- statistics


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def sample_variance(values: list[float]) -> float:
    """Unbiased variance (ddof=1); undefined (nan) for fewer than two values."""
    return statistics.variance(values) if len(values) > 1 else math.nan


def welch_p_value(values: list[float], baseline: list[float]) -> float:
    """Two-sided Welch t-test p-value; nan when it is undefined (n < 2, or no variance)."""
    if len(values) < 2 or len(baseline) < 2:
        return math.nan
    if sample_variance(values) == 0 and sample_variance(baseline) == 0:
        return math.nan
    from scipy import stats

    return float(stats.ttest_ind(values, baseline, equal_var=False).pvalue)


def confidence_interval(values: list[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean: mean ± t(0.975, n-1) * std / sqrt(n), Student's
    t over the seeds; (nan, nan) for fewer than two values."""
    if len(values) < 2:
        return math.nan, math.nan
    from scipy import stats

    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * math.sqrt(
        sample_variance(values) / len(values)
    )
    return mean(values) - half, mean(values) + half


def task_set(cell: Cell) -> tuple[str, ...]:
    """The names of the tasks a row scores (empty for a single-task config): an auxiliary task
    that does not serve (`mlm`) trains the encoder but is not part of its val-acc."""
    return tuple(sorted(scored_tasks(cell)))


def scored_tasks(cell: Cell) -> dict[str, dict[str, Any]]:
    from xtune.catalog import resolve, table

    types = table("tasks")

    def serves(task: dict[str, Any]) -> bool:
        kind = task.get("type", "classification")
        return kind not in types or resolve(types.get(kind).fact("rules")).serves

    tasks = {name: task for name, task in (cell.config.get("tasks") or {}).items() if task}
    return {name: task for name, task in tasks.items() if serves(task)} or tasks


LABEL_KEYS = ("labels", "label_format", "label_columns")


def label_sources(cell: Cell) -> tuple[tuple[str, str], ...]:
    """Where each task's labels come from (`data.labels` and its format): a row that trains
    other labels (the sample's `label_path` instead of `labels`) scores another quantity."""
    configs = scored_tasks(cell) or {"": cell.config}
    return tuple(
        (name, json.dumps({key: (task.get("data") or {}).get(key) for key in LABEL_KEYS}))
        for name, task in sorted(configs.items())
        if task
    )


def comparable(cell: Cell, baseline: Cell) -> bool:
    """Whether the row's val-acc measures what the baseline's does: the same set of tasks (a
    multi-task mean over other tasks, or one task's metric, is another quantity) with labels
    from the same columns."""
    return task_set(cell) == task_set(baseline) and label_sources(cell) == label_sources(baseline)


def best_cell(cells: list[Cell], metric: str) -> Cell | None:
    """The row with the best mean among those comparable with the baseline (the first)."""
    from xtune.metric_directions import METRIC_DIRECTIONS

    scored = [cell for cell in cells if cell.ok_runs and comparable(cell, cells[0])]
    if not scored:
        return None
    sign = 1 if METRIC_DIRECTIONS.get(metric, "max") == "max" else -1
    return max(scored, key=lambda cell: sign * mean(cell.values(metric)))


# ---------------------------------------------------------------- settings that vary


def flatten(config: dict[str, Any], whole_tasks: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`{"head": {"units": [256]}}` -> `{"head.units": [256]}` (one level of sections); each
    task's settings one level deeper (`tasks.sts.loss`, and its data keys `tasks.sts.data.
    prepare`). A task some rows leave out (`whole_tasks`) is also one setting, its type
    (`tasks.corpus`: mlm), so that a row that adds it shows as adding it."""
    flat = {}
    for section, values in config.items():
        if not isinstance(values, dict):
            flat[section] = values
            continue
        for key, value in values.items():
            if section == "tasks" and isinstance(value, dict):
                if key in whole_tasks:
                    flat[f"tasks.{key}"] = value.get("type", "classification")
                flat.update(task_settings(key, value))
            else:
                flat[f"{section}.{key}"] = value
    for key in (*NON_RESULT_KEYS, "training.seed"):
        flat.pop(key, None)
    return flat


def task_settings(name: str, task: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in task.items():
        if key == "data" and isinstance(value, dict):
            flat.update({f"tasks.{name}.data.{item}": v for item, v in value.items()})
        else:
            flat[f"tasks.{name}.{key}"] = value
    return flat


def partial_tasks(cells: list[Cell]) -> frozenset[str]:
    """Names of the tasks that some rows leave out (a grid row's `tasks.quora: null`)."""
    names = [set(cell.config.get("tasks") or {}) for cell in cells]
    return frozenset(set().union(*names) - set.intersection(*names)) if names else frozenset()


def varying_settings(cells: list[Cell]) -> list[str]:
    """Settings whose value differs between rows; a setting inside a task that some rows
    leave out varies only if it differs between the rows that have that task."""
    whole = partial_tasks(cells)
    flats = [flatten(cell.config, whole) for cell in cells]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    missing = object()

    def varies(key: str) -> bool:
        owner = next((f"tasks.{name}" for name in whole if key.startswith(f"tasks.{name}.")), None)
        group = [flat for flat in flats if owner is None or owner in flat]
        return len({repr(flat.get(key, missing)) for flat in group}) > 1

    return [key for key in keys if varies(key)]


def setting_name(key: str) -> str:
    if key in SETTING_NAMES:
        return SETTING_NAMES[key]
    section, _, name = key.partition(".")
    if name == "name":
        return section
    words = name.replace("_", " ")
    return words if section in SILENT_SECTIONS else f"{section} {words}"


def changes_from(cell: Cell, baseline: Cell, keys: list[str], whole: frozenset[str]) -> str:
    if cell is baseline:
        return "(baseline)"
    flat, base = flatten(cell.config, whole), flatten(baseline.config, whole)
    parts = [
        f"{setting_name(key)} {format_value(flat[key])}"
        for key in keys
        if key in flat and flat.get(key) != base.get(key)
    ]
    parts += [f"no {setting_name(key)}" for key in keys if key in base and key not in flat]
    return "; ".join(parts) or "(same settings)"


# ---------------------------------------------------------------- markdown


def number(value: float, digits: int = 4) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def variance_text(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3e}"


def p_text(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3g}"


@dataclass(frozen=True)
class Number:
    """A table value: markdown and LaTeX show it in `style`, CSV writes it in full."""

    value: float | None
    style: str = "{:.4f}"

    def missing(self) -> bool:
        return self.value is None or math.isnan(self.value)

    def __str__(self) -> str:
        return "–" if self.missing() else self.style.format(self.value)

    def csv(self) -> list[str]:
        return [""] if self.missing() else [repr(float(self.value))]


@dataclass(frozen=True)
class MeanStd:
    """`0.6167 ± 0.0208`; two CSV columns (mean, std)."""

    mean: float
    std: float

    def __str__(self) -> str:
        return "–" if math.isnan(self.mean) else f"{number(self.mean)} ± {number(self.std)}"

    def csv(self) -> list[str]:
        return [*Number(self.mean).csv(), *Number(self.std).csv()]


@dataclass(frozen=True)
class Interval:
    """`[0.5650, 0.6683]`; two CSV columns (low, high)."""

    low: float
    high: float

    def __str__(self) -> str:
        return "–" if math.isnan(self.low) else f"[{number(self.low)}, {number(self.high)}]"

    def csv(self) -> list[str]:
        return [*Number(self.low).csv(), *Number(self.high).csv()]


Value = str | Number | MeanStd | Interval


@dataclass
class CellTable:
    """The table of cells, its values typed so that each format writes them its own way."""

    header: list[str]
    rows: list[list[Value]]
    best: int | None  # the row shown in bold
    score_column: int  # the val-acc column (bold too)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def escape(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(escape, header)) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return lines


def render(
    cells: list[Cell],
    metric: str,
    source: Path,
    incomplete_tail: int,
    folder: Path,
    warnings: list[str],
    ci: bool,
) -> list[str]:
    runs = [run for cell in cells for run in cell.runs]
    grid = runs[0]["grid"]
    ok = [run for run in runs if run["status"] == "ok"]
    failed = [run for run in runs if run["status"] != "ok"]
    seeds = sorted({run["seed"] for run in runs})
    lines = [f"# Grid `{grid}`: dev {metric}, {len(cells)} rows x {len(seeds)} seeds", ""]
    description = grid_description(runs)
    if description:
        lines += [f"> {description}", ""]
    lines += header_notes(cells, metric, source, runs, ok, failed, incomplete_tail, folder)
    lines += [f"- **Warning:** {warning}." for warning in warnings]
    lines += ["", "## Cells", ""]
    lines += markdown_cells(cell_table(cells, metric, ci))
    lines += decision_rule_section(cells)
    lines += test_section(cells, metric)
    lines += ["", "## Per seed", ""]
    lines += seed_table(cells, metric)
    lines += data_warnings_section(runs)
    lines += ["", "## Failed runs", ""]
    if failed:
        lines += table(
            ["row", "seed", "run id", "error"],
            [
                [run["row"], str(run["seed"]), f"`{run['run_id']}`", short_error(run)]
                for run in failed
            ],
        )
    else:
        lines.append("None.")
    return lines


def header_notes(
    cells: list[Cell],
    metric: str,
    source: Path,
    runs: list[dict[str, Any]],
    ok: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    incomplete_tail: int,
    folder: Path,
) -> list[str]:
    epochs = sorted({run["config"]["training"]["epochs"] for run in runs})
    seeds = sorted({run["seed"] for run in runs})
    relative_source = Path(os.path.relpath(source.resolve(), folder.resolve())).as_posix()
    notes = [
        f"- **Encoder that produced these numbers:** {encoder_text(cells)}",
        f"- **val-acc** is the dev-set `{metric}` ({metric_origin(metric)}) at each run's "
        "best epoch, i.e. the epoch whose weights the run keeps; the per-seed table also gives "
        "the final epoch's value. micro/macro-F1 are dev values at that same epoch.",
        "- Each cell: mean ± std over its seeds; std and the variance V(val-acc) are sample "
        "statistics (ddof=1, divided by n-1), so they need n ≥ 2. Δ is the cell's mean minus "
        "the baseline's (the first row). p is the two-sided Welch t-test (unequal variances) "
        "of the cell's per-seed val-acc against the baseline's; – where undefined. The best "
        "cell is in **bold**.",
        *other_task_sets_note(cells),
        *shared_settings_note(runs),
        f"- Runs: {len(ok)} ok, {len(failed)} failed; epochs per run: "
        f"{', '.join(map(str, epochs))}; seeds: {', '.join(map(str, seeds))}.",
        f"- Source: [{relative_source}]({relative_source}) (grid file "
        f"`{runs[0].get('grid_file', '?')}`); written {time.strftime('%Y-%m-%d %H:%M')}.",
    ]
    majority = majority_text(ok, metric)
    if majority:
        notes.append(f"- Constant predictor for scale: {majority}.")
    devices = sorted({describe_device(run) for run in ok})
    commits = sorted({commit_text(run) for run in runs})
    versions = runs[-1].get("versions") or {}
    if devices:
        wall = sum(run.get("wall_seconds", 0.0) for run in runs)
        notes.append(
            f"- Device: {', '.join(devices)}; summed run wall time {wall / 60:.1f} min; "
            f"code: {', '.join(commits)}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
            + "."
        )
    if incomplete_tail:
        notes.append(
            f"- The results file ends in an incomplete line ({incomplete_tail} bytes, an "
            "interrupted write); it is ignored here and repaired by the next `xtune grid`."
        )
    return notes


def metric_origin(metric: str) -> str:
    if metric == "mean_score":
        return "the mean of the tasks' selection metrics, weighted by `tasks.NAME.weight`"
    return "the grid's `training.metric`"


def other_task_sets_note(cells: list[Cell]) -> list[str]:
    """Why rows that train another set of tasks than the baseline have no Δ, p or bold."""
    others = [cell for cell in cells if not comparable(cell, cells[0])]
    if not others:
        return []

    def tasks_text(cell: Cell) -> str:
        tasks = ", ".join(task_set(cell)) or "the single task"
        if label_sources(cell) == label_sources(cells[0]) or task_set(cell):
            return tasks
        labels = (cell.config.get("data") or {}).get("labels")
        return f"{tasks}, labels from {labels!r}"

    rows = "; ".join(f"{cell.name} ({tasks_text(cell)})" for cell in others)
    return [
        f"- Rows that train other tasks or labels than the baseline ({tasks_text(cells[0])}): "
        f"{rows}. Their val-acc measures another quantity, so it is not comparable: they are "
        "not ranked and get no Δ or p against the baseline."
    ]


def shared_settings_note(runs: list[dict[str, Any]]) -> list[str]:
    """The settings given for every run (the grid file's `set:` and `xtune grid --set`), as
    the results recorded them; each distinct set with its count of runs when they differ."""
    counts: dict[str, int] = {}
    for run in runs:
        shared = run.get("shared_overrides") or {}
        text = "; ".join(f"`{key}={format_value(value)}`" for key, value in shared.items())
        counts[text] = counts.get(text, 0) + 1
    counts.pop("", None) if len(counts) == 1 else None
    if not counts:
        return []
    if len(counts) == 1:
        (text,) = counts
        return [f"- Set for every run (the grid's `set:` and `--set`): {text}."]
    sets = "; ".join(f"{text or '(nothing)'} ({n} runs)" for text, n in counts.items())
    return [f"- **Runs were given different `set:` / `--set` settings:** {sets}."]


def grid_description(runs: list[dict[str, Any]]) -> str:
    """The grid file's `description`: from the result lines, else (lines written before they
    carried it) from the grid file, when it is still there."""
    recorded = runs[-1].get("grid_description")
    if recorded is not None:
        return " ".join(str(recorded).split())
    path = Path(runs[-1].get("grid_file") or "")
    if not path.is_file():
        return ""
    from xtune.config import yaml_load

    try:
        raw = yaml_load(path.read_text(encoding="utf-8"))
    except Exception:  # a report must not fail on a grid file edited since
        return ""
    return " ".join(str(raw.get("description") or "").split()) if isinstance(raw, dict) else ""


def majority_text(ok: list[dict[str, Any]], metric: str) -> str | None:
    """The dev metric of predicting the training set's most frequent label set for every row."""
    values = {
        round(run["baseline"]["most_frequent_label_set"][metric], 4)
        for run in ok
        if metric in (run.get("baseline") or {}).get("most_frequent_label_set", {})
    }
    if len(values) != 1:
        return None
    return (
        f"always predicting the most frequent training label set scores dev `{metric}` "
        f"{values.pop():.4f}"
    )


def encoder_text(cells: list[Cell]) -> str:
    by_source: dict[str, list[str]] = {}
    for cell in cells:
        for source in dict.fromkeys(run.get("encoder") for run in cell.runs):
            by_source.setdefault(source or "unknown (no run got far enough)", []).append(cell.name)
    if len(by_source) == 1:
        (source,) = by_source
        text = f"{source} (every row)."
    else:
        text = "; ".join(
            f"{source} (rows: {', '.join(names)})" for source, names in by_source.items()
        )
    if any(source.startswith("random") for source in by_source):
        text += (
            " A *random* encoder has no pretrained weights: its numbers say how the settings "
            "behave on a small randomly initialised BERT, not what a pretrained checkpoint reaches."
        )
    return text


def describe_device(run: dict[str, Any]) -> str:
    host = run.get("host") or {}
    gpus = host.get("gpus") or []
    device = run.get("device", "?")
    if gpus:
        return f"{device} ({', '.join(gpus)})"
    return f"{device} ({host.get('cpu_count', '?')} cores)"


def commit_text(run: dict[str, Any]) -> str:
    commit = run.get("git_commit")
    if not commit:
        return "git commit unknown"
    return f"commit {commit[:10]}" + (" + uncommitted changes" if run.get("git_dirty") else "")


def cell_table(cells: list[Cell], metric: str, ci: bool = False) -> CellTable:
    """One row per cell: the settings that vary, val-acc over seeds, Δ and Welch p against the
    baseline (the first cell) for the rows comparable with it."""
    keys = varying_settings(cells)
    baseline = cells[0]
    best = best_cell(cells, metric)
    baseline_values = baseline.values(metric)
    as_columns = len(keys) <= MAX_SETTING_COLUMNS
    task_keys = task_metric_keys(cells)
    whole = partial_tasks(cells)
    header = ["row"]
    header += [setting_name(key) for key in keys] if as_columns else ["changes vs baseline"]
    score_column = len(header)
    header += [f"val-acc (dev {metric}) mean ± std", "V(val-acc)"]
    header += [f"val-acc {CONFIDENCE:.0%} CI"] if ci else []
    header += ["n", "best epoch"]
    # A multi-task grid: each task's selection metric instead of the F1 columns.
    header += [f"{key} mean ± std" for key in task_keys] if task_keys else ["micro-F1", "macro-F1"]
    rules = extra_rules([run for cell in cells for run in cell.ok_runs], "dev")
    header += [f"macro-F1 {label} mean ± std" for label, _ in rules]
    hierarchy_keys = hierarchy_metric_keys(cells)
    header += [f"{key} mean ± std" for key in hierarchy_keys]
    header += ["Δ vs baseline", "p (Welch)"]
    rows: list[list[Value]] = []
    for cell in cells:
        values = cell.values(metric)
        flat = flatten(cell.config, whole)
        row: list[Value] = [cell.name]
        if as_columns:
            row += [format_value(flat[key]) if key in flat else "–" for key in keys]
        else:
            row.append(changes_from(cell, baseline, keys, whole))
        spread = sample_variance(values)
        average = mean(values)
        failures = sum(1 for run in cell.runs if run["status"] != "ok")
        compared = cell is not baseline and comparable(cell, baseline)
        row += [MeanStd(average, math.sqrt(spread)), Number(spread, "{:.3e}")]
        row += [Interval(*confidence_interval(values))] if ci else []
        row += [
            f"{len(values)}" + (f" ({failures} failed)" if failures else ""),
            Number(mean([run["best_epoch"] for run in cell.ok_runs]), "{:.1f}"),
            *(
                [mean_std_of([run["best"].get(key) for run in cell.ok_runs]) for key in task_keys]
                if task_keys
                else [
                    Number(mean([run["best"]["micro_f1"] for run in cell.ok_runs])),
                    Number(mean([run["best"]["macro_f1"] for run in cell.ok_runs])),
                ]
            ),
            *[
                mean_std_of([rule(run).get("macro_f1") for run in cell.ok_runs])
                for _, rule in rules
            ],
            *[
                mean_std_of([run["best"].get(key) for run in cell.ok_runs])
                for key in hierarchy_keys
            ],
            Number(average - mean(baseline_values) if compared else None, "{:+.4f}"),
            Number(welch_p_value(values, baseline_values) if compared else None, "{:.3g}"),
        ]
        rows.append(row)
    best_row = cells.index(best) if best is not None else None
    return CellTable(header, rows, best_row, score_column)


def markdown_cells(cells: CellTable) -> list[str]:
    rows = [[str(value) for value in row] for row in cells.rows]
    if cells.best is not None:
        best = rows[cells.best]
        best[0] = f"**{best[0]}**"
        if best[cells.score_column] != "–":
            best[cells.score_column] = f"**{best[cells.score_column]}**"
    return table(cells.header, rows)


def csv_header(name: str, value: Value) -> list[str]:
    """A column's CSV name(s): a mean ± std or an interval is two columns."""
    if isinstance(value, MeanStd):
        base = name.removesuffix(" mean ± std")
        return [f"{base} mean", f"{base} std"]
    if isinstance(value, Interval):
        return [f"{name} low", f"{name} high"]
    return [name]


def csv_text(cells: CellTable) -> str:
    """The table of cells as CSV: numbers in full, a mean ± std as two columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    first = cells.rows[0]
    header = [
        part
        for name, value in zip(cells.header, first, strict=True)
        for part in csv_header(name, value)
    ]
    writer.writerow(header)
    for row in cells.rows:
        writer.writerow(
            [
                part
                for value in row
                for part in (value.csv() if not isinstance(value, str) else [value])
            ]
        )
    return buffer.getvalue()


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(character, character) for character in str(text))


def latex_text(cells: CellTable, rows: list[Cell], metric: str, warnings: list[str]) -> str:
    """The table of cells as a LaTeX `table` (booktabs rules); the best row in bold; notes and
    warnings as comments above it."""
    grid = rows[0].runs[0]["grid"]
    notes = [*other_task_sets_note(rows), *(f"Warning: {warning}." for warning in warnings)]
    lines = [f"% {' '.join(note.removeprefix('- ').split())}" for note in notes]
    lines += [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{" + "l" * len(cells.header) + "}",
        r"\toprule",
        " & ".join(latex_escape(name) for name in cells.header) + r" \\",
        r"\midrule",
    ]
    for position, row in enumerate(cells.rows):
        texts = [latex_escape(value) for value in row]
        if position == cells.best:
            for column in (0, cells.score_column):
                texts[column] = rf"\textbf{{{texts[column]}}}"
        lines.append(" & ".join(texts) + r" \\")
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{Grid \texttt{{{latex_escape(grid)}}}: dev \texttt{{{latex_escape(metric)}}}"
        r" at each run's best epoch, mean $\pm$ sample std over seeds; $\Delta$ and Welch's "
        r"$p$ against the first row.}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def task_metric_keys(cells: list[Cell]) -> list[str]:
    """`task.metric` keys of the multi-task runs' selection metrics, in first-seen order
    (a row that leaves a task out shows – in its column)."""
    keys: list[str] = []
    for cell in cells:
        for run in cell.ok_runs:
            keys += [key for key in run.get("task_metrics") or [] if key not in keys]
    return keys


# Per-level and hierarchical columns of hierarchical-label runs (xtune.tasks.hierarchical).
HIERARCHY_COLUMNS = ("accuracy", "macro_f1")
HIERARCHY_SUMMARY_KEYS = ("hierarchical_f1", "consistency")


def hierarchy_metric_keys(cells: list[Cell]) -> list[str]:
    """`level_<k>_accuracy`, `level_<k>_macro_f1` for every level the runs report, then
    `hierarchical_f1` and `consistency`; none for grids without hierarchical labels."""
    present: set[str] = set()
    for cell in cells:
        for run in cell.ok_runs:
            present.update(key for key in run.get("best") or {} if isinstance(key, str))
    levels = sorted(
        {int(key.split("_")[1]) for key in present if re.fullmatch(r"level_\d+_accuracy", key)}
    )
    keys = [f"level_{level}_{name}" for level in levels for name in HIERARCHY_COLUMNS]
    keys += [key for key in HIERARCHY_SUMMARY_KEYS if key in present]
    return [key for key in keys if key in present]


# ---------------------------------------------------------------- other decision rules


Rule = Any  # run line -> metrics dict of one split under one decision rule ({} when absent)


def extra_rules(runs: list[dict[str, Any]], split: str) -> list[tuple[str, Rule]]:
    """The decision rules besides the loss's default that some run scored on `split`: tuned
    per-label thresholds (`training.tune_thresholds`) and each fixed threshold of
    `training.report_thresholds`, as (column label, accessor) pairs."""
    rules: list[tuple[str, Rule]] = []
    if split == "dev" and any(run.get("tuned") for run in runs):
        rules.append(("(tuned thr.)", lambda run: run.get("tuned") or {}))
    if split == "test" and any((run.get("test") or {}).get("tuned_thresholds") for run in runs):
        rules.append(
            ("(tuned thr.)", lambda run: (run.get("test") or {}).get("tuned_thresholds") or {})
        )
    for threshold in fixed_thresholds(runs, split):
        rules.append((f"(> {threshold})", fixed_rule(split, threshold)))
    return rules


def fixed_thresholds(runs: list[dict[str, Any]], split: str) -> list[str]:
    """The `training.report_thresholds` some run scored on `split`, ascending."""
    found = {t for run in runs for t in ((run.get("fixed_thresholds") or {}).get(split) or {})}
    return sorted(found, key=float)


def fixed_rule(split: str, threshold: str) -> Rule:
    return lambda run: ((run.get("fixed_thresholds") or {}).get(split) or {}).get(threshold) or {}


def mean_std_of(values: list[float | None]) -> MeanStd:
    present = [float(v) for v in values if v is not None]
    return MeanStd(mean(present), math.sqrt(sample_variance(present)) if present else math.nan)


def mean_std(values: list[float | None]) -> str:
    present = [float(v) for v in values if v is not None]
    if not present:
        return "–"
    spread = sample_variance(present)
    return f"{number(mean(present))} ± {number(math.sqrt(spread))}"


def rule_records(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A run's decision-rule records as (task, record): one unnamed record for a config
    without `tasks:`, one per label task else; none for results from before they existed."""
    record = run.get("decision_rule") or {}
    if "served" in record:
        return [("", record)]
    return sorted(record.items())


def decision_rule_section(cells: list[Cell]) -> list[str]:
    """Per row (and label task): the rule the runs serve and both rules' dev values of the
    selection metric (the tuned one cross-validated on dev, and fitted on all of dev)."""
    rows = []
    for cell in cells:
        by_task: dict[str, list[dict[str, Any]]] = {}
        for run in cell.ok_runs:
            for task, record in rule_records(run):
                by_task.setdefault(task, []).append(record)
        for task, records in by_task.items():
            served = Counter(record["served"] for record in records)
            dev = [record.get("dev") or {} for record in records]
            rows.append(
                [
                    cell.name + (f" / {task}" if task else ""),
                    ", ".join(f"{rule} ×{count}" for rule, count in sorted(served.items())),
                    records[0]["metric"],
                    mean_std([values.get("default") for values in dev]),
                    mean_std([values.get("tuned_cross_validated") for values in dev]),
                    mean_std([values.get("tuned") for values in dev]),
                ]
            )
    if not rows:
        return []
    lines = [
        "",
        "## Decision rule served",
        "",
        "What the export and `xtune predict` apply (`training.decision_rule`; `auto` serves the "
        "tuned thresholds only when they beat the default rule cross-validated on dev), and "
        "both rules' dev values of the selection metric, mean ± std over seeds.",
        "",
    ]
    header = ["row", "served (runs)", "metric", "default rule", "tuned (cross-validated)"]
    return lines + table([*header, "tuned (fitted on dev)"], rows)


def test_section(cells: list[Cell], metric: str) -> list[str]:
    """Test-set numbers of the best dev row only: choosing among rows on test would make the
    test set a second dev set."""
    best = best_cell(cells, metric)
    runs = [run for run in best.ok_runs if run.get("test")] if best else []
    if not runs:
        return []
    default = [("default rule", lambda run: run["test"].get("default_rule") or {})]
    rules = default + [(label.strip("()"), rule) for label, rule in extra_rules(runs, "test")]
    keys = ("macro_f1", "macro_precision", "macro_recall", "micro_f1", "subset_accuracy")
    lines = [
        "",
        "## Test set",
        "",
        f"Best dev row only: **{best.name}** (highest mean dev `{metric}`); mean ± std over "
        f"its {len(runs)} seeds. Other rows' test numbers are not shown: choosing among rows "
        "by test score would turn the test set into a second dev set.",
        "",
    ]
    rows = [
        [name, *[mean_std([rule(run).get(key) for run in runs]) for key in keys]]
        for name, rule in rules
    ]
    lines += table(["decision rule", *[key.replace("_", " ") for key in keys]], rows)
    lines += per_label_table(runs)
    return lines


def cost_section(cells: list[Cell], metric: str, test_per_row: bool) -> list[str]:
    """Per row: trainable parameters, train samples/s and wall time (what a method costs);
    with `test_per_row`, each row's test `metric` too."""
    rows = [cost_row(cell, metric, test_per_row) for cell in cells if cell.ok_runs]
    if not rows:
        return []
    header = ["row", "trainable parameters", "train samples/s mean ± std", "wall s (mean)"]
    note = (
        "Trainable parameters as the run counted them (built, before training); train "
        "samples/s over the training epochs alone; wall s: the whole run (loading, "
        "training, scoring)."
    )
    if test_per_row:
        header.append(f"test {metric} mean ± std")
        note += (
            f" Test `{metric}` per row is shown on request (`--test-per-row`), for a test set "
            "that is a second held-out set; the best row is still the best on dev."
        )
    return ["", "## Cost per row", "", note, "", *table(header, rows)]


def cost_row(cell: Cell, metric: str, test_per_row: bool) -> list[str]:
    runs = cell.ok_runs
    counts = sorted({(run.get("parameters") or {}).get("trainable") or 0 for run in runs})
    speeds = [run["train_samples_per_second"] for run in runs if "train_samples_per_second" in run]
    speed = "–"
    if speeds:
        spread = f" ± {sample_variance(speeds) ** 0.5:.1f}" if len(speeds) > 1 else ""
        speed = f"{mean(speeds):.1f}{spread}"
    row = [cell.name, " / ".join(f"{count:,}" if count else "–" for count in counts), speed]
    row.append(str(Number(mean([run["wall_seconds"] for run in runs]), "{:.0f}")))
    if test_per_row:
        row.append(mean_std([test_score(run, metric) for run in runs]))
    return row


def test_score(run: dict[str, Any], metric: str) -> float | None:
    return ((run.get("test") or {}).get("default_rule") or {}).get(metric)


def per_label_table(runs: list[dict[str, Any]]) -> list[str]:
    """Per-label test P/R/F1 at the first fixed threshold, averaged over seeds."""
    thresholds = fixed_thresholds(runs, "test")
    if not thresholds:
        return []
    rule = fixed_rule("test", thresholds[0])
    reports = [rule(run).get("per_label") or [] for run in runs]
    reports = [report for report in reports if report]
    if not reports:
        return []
    rows = []
    for i, first in enumerate(reports[0]):
        rows.append(
            [
                first["label"],
                *[
                    number(mean([report[i][key] for report in reports]), 3)
                    for key in ("precision", "recall", "f1")
                ],
                str(first["support"]),
            ]
        )
    return [
        "",
        "## Test set per label",
        "",
        f"The best dev row's test precision, recall and F1 per label at the fixed threshold "
        f"{thresholds[0]} (a label is predicted when its score is above it), mean over seeds.",
        "",
        *table(["label", "precision", "recall", "F1", "support"], rows),
    ]


def signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.4f}"


def seed_table(cells: list[Cell], metric: str) -> list[str]:
    header = [
        "row",
        "seed",
        "run id",
        f"val-acc (dev {metric}, best epoch)",
        "best epoch",
        "val-acc (final epoch)",
        "micro-F1",
        "macro-F1",
        "wall s",
        "steps/s",
    ]
    rows = []
    for cell in cells:
        for run in cell.ok_runs:
            rows.append(
                [
                    cell.name,
                    str(run["seed"]),
                    f"`{run['run_id']}`",
                    number(run["best"][metric]),
                    str(run["best_epoch"]),
                    number(run["final"][metric]),
                    number(run["best"].get("micro_f1", math.nan)),  # none in multi-task runs
                    number(run["best"].get("macro_f1", math.nan)),
                    f"{run['wall_seconds']:.1f}",
                    number(run.get("steps_per_second") or math.nan, 2),
                ]
            )
    return table(header, rows)


def data_warnings_section(runs: list[dict[str, Any]]) -> list[str]:
    """The data warnings the runs recorded (unseen or rare labels in dev/test), each once."""
    warned: dict[str, dict[str, str]] = {}  # warning -> {run id: row}
    for run in runs:
        for warning in run.get("data_warnings") or []:
            text = " ".join(str(warning).split())
            warned.setdefault(text, {})[run["run_id"]] = run["row"]
    if not warned:
        return []
    lines = ["", "## Data warnings", ""]
    for warning, by_run in warned.items():
        rows = ", ".join(dict.fromkeys(by_run.values()))
        lines.append(
            f"- {warning} ({'every run' if len(by_run) == len(runs) else 'rows: ' + rows})"
        )
    return lines


def short_error(run: dict[str, Any]) -> str:
    error = str(run.get("error") or "unknown error").splitlines()[0]
    return error if len(error) <= ERROR_CHARACTERS else error[: ERROR_CHARACTERS - 1] + "…"


# ---------------------------------------------------------------- plot


def plot_curves(cells: list[Cell], metric: str, path: Path) -> str | None:
    """Dev metric per epoch: each cell's mean over seeds with a ± std band; when every run
    trained one epoch, each row's seeds and mean ± std instead. Returns the plot's caption,
    None when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"val_{metric}"
    drawn = [cell for cell in cells if cell.ok_runs]
    if not drawn:
        return None
    if all(len(run["history"]) == 1 for cell in drawn for run in cell.ok_runs):
        return plot_rows(drawn, metric, path, plt)
    figure, axes = plt.subplots(figsize=(8, 4.8))
    colors = plt.get_cmap("tab10" if len(drawn) <= 10 else "tab20")
    for position, cell in enumerate(drawn):
        epochs = sorted({record["epoch"] for run in cell.ok_runs for record in run["history"]})
        means, stds = [], []
        for epoch in epochs:
            values = [
                record[key]
                for run in cell.ok_runs
                for record in run["history"]
                if record["epoch"] == epoch
            ]
            means.append(mean(values))
            spread = sample_variance(values)
            stds.append(0.0 if math.isnan(spread) else math.sqrt(spread))
        color = colors(position % colors.N)
        label = f"{cell.name} (n={len(cell.ok_runs)})"
        axes.plot(epochs, means, marker="o", color=color, label=label)
        axes.fill_between(
            epochs,
            [m - s for m, s in zip(means, stds, strict=True)],
            [m + s for m, s in zip(means, stds, strict=True)],
            color=color,
            alpha=0.15,
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"dev {metric}")
    axes.set_title(f"{cells[0].runs[0]['grid']}: dev {metric} per epoch (mean ± std over seeds)")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    save_figure(figure, path, plt)
    return f"dev {metric} per epoch"


def save_figure(figure: Any, path: Path, plt: Any) -> None:
    """Save atomically (a full disk leaves the previous plot, no temporary file), then close."""
    try:
        write_atomically(
            path,
            lambda temporary: figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight"),
        )
    finally:
        plt.close(figure)


def plot_rows(cells: list[Cell], metric: str, path: Path, plt: Any) -> str:
    """One line per row: its seeds' dev values as dots and their mean ± std as a bar."""
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(cells) + 1.4))
    for position, cell in enumerate(cells):
        y = len(cells) - 1 - position  # the baseline on top
        values = cell.values(metric)
        spread = sample_variance(values)
        axes.errorbar(
            mean(values),
            y,
            xerr=0.0 if math.isnan(spread) else math.sqrt(spread),
            fmt="D",
            color="black",
            capsize=4,
        )
        axes.scatter(values, [y] * len(values), color="tab:blue", alpha=0.6, zorder=3)
    axes.set_yticks(range(len(cells)), [cell.name for cell in reversed(cells)])
    axes.set_xlabel(f"dev {metric}")
    axes.set_title(
        f"{cells[0].runs[0]['grid']}: dev {metric} per row (dots: seeds; diamond: mean ± std)"
    )
    axes.grid(alpha=0.3, axis="x")
    save_figure(figure, path, plt)
    return f"dev {metric} per row"
