"""The run folder of a run (one task or many) and how its model is loaded back.

config.yaml (resolved), encoder.json + tokenizer files, tokenizer.json (the first task's
tokenizer settings, for tools that read one), tasks.json ({name: type, labels, metric,
columns, tokenizer settings}), labels.json ({"labels": [...], "tasks": {name: labels}}),
preparation.json and preparation_report.json (tasks with `data.prepare`: the learned text
preparation that predicting applies, and what it removed from each split),
model.weights.h5 (the shared encoder and every task's output), thresholds.json, history.json
/ csv, metrics.json (written last). `load_run` rebuilds the model and loads the weights after
checking their sha256; folders written before tasks.json existed load as one `default` task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xtune.data.preparation import (
    FORMAT,
    FORMAT_VERSION,
    PREPARATION_FILE,
    REPORT_FILE,
    TextPreparation,
)
from xtune.run_folder import (
    WEIGHTS_FILE,
    RunFolder,
    RunFolderError,
    check_run_folder,
    load_weights,
    verify_weights,
    write_atomic,
)

TASKS_FILE = "tasks.json"


def create_run_folder(path: str | Path, config: Any, tasks: list[Any], encoder: Any) -> RunFolder:
    """The run folder with its setup files (see the module docstring)."""
    folder = RunFolder.create(path)
    write_atomic(folder.path / "config.yaml", config.to_yaml())
    records = {
        task.name: {**task.record(), "tokenizer": task.text_encoder(encoder).settings()}
        for task in tasks
    }
    write_atomic(folder.path / TASKS_FILE, json.dumps(records, indent=1, ensure_ascii=False))
    # `labels`: the one task's labels for a config without `tasks:` (as before tasks existed).
    single = tasks[0].labels if config.tasks is None else []
    labels = {"labels": single, "tasks": {task.name: task.labels for task in tasks}}
    write_atomic(folder.path / "labels.json", json.dumps(labels, indent=1, ensure_ascii=False))
    stored = folder.write_tokenizer_files(encoder)
    write_atomic(folder.path / "encoder.json", json.dumps(stored, indent=1, default=str))
    first = next(iter(records.values()))["tokenizer"]
    write_atomic(folder.path / "tokenizer.json", json.dumps(first, indent=1))
    write_preparation(folder.path, tasks)
    return folder


def write_preparation(path: Path, tasks: list[Any]) -> None:
    """preparation.json (what predicting applies) and preparation_report.json (what it
    removed), for the tasks whose data went through `data.prepare`."""
    prepared = {task.name: task.preparation for task in tasks if task.preparation is not None}
    if not prepared:
        return
    write_atomic(path / PREPARATION_FILE, preparation_json(prepared))
    reports = {name: preparation.report for name, preparation in prepared.items()}
    write_atomic(path / REPORT_FILE, json.dumps(reports, indent=1, ensure_ascii=False))


def preparation_json(preparations: dict[str, TextPreparation]) -> str:
    """preparation.json's text (run folder, export assets): each task's preparation record."""
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tasks": {name: preparation.to_dict() for name, preparation in preparations.items()},
    }
    return json.dumps(record, indent=1, ensure_ascii=False)


def read_preparations(path: Path) -> dict[str, TextPreparation]:
    """Each prepared task's `TextPreparation` from a folder's preparation.json (a run folder
    or an export's assets); {} when there is none (a run without `data.prepare`)."""
    file = path / PREPARATION_FILE
    if not file.is_file():
        return {}
    record = read_json(file)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise RunFolderError(f"{file}: not an xtune preparation record (format {FORMAT!r})")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise RunFolderError(
            f"{file}: written by a newer xtune (format version {record['format_version']}); "
            "upgrade xtune to predict with it"
        )
    preparations = {}
    for name, item in (record.get("tasks") or {}).items():
        try:
            preparations[name] = TextPreparation.from_dict(item)
        except (AttributeError, TypeError, ValueError) as error:
            raise RunFolderError(f"{file}: task {name!r}: damaged ({error})") from None
    return preparations


@dataclass
class LoadedRun:
    """A trained run: its config, tasks (labels set), the model graph and its task views,
    each task's text encoder, the thresholds it serves (None: the loss's own rule) and its
    decision-rule record (thresholds.json's `decision_rules`; empty for older folders)."""

    path: Path
    config: Any  # RunConfig
    tasks: list[Any]
    graph: Any  # xtune.model.TaskGraph
    text_encoders: dict[str, Any]
    encoder: Any
    thresholds: dict[str, np.ndarray | None]
    decision_rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Each prepared task's text preparation (preparation.json), applied before tokenizing.
    preparations: dict[str, TextPreparation] = field(default_factory=dict)

    def task(self, name: str | None = None) -> Any:
        """The task called `name`; the first (or only) task when `name` is None."""
        if name is None:
            return self.tasks[0]
        return next(task for task in self.tasks if task.name == name)


def load_run(path: str | Path, check: bool = True) -> LoadedRun:
    """Rebuild a finished run's model from its folder and load its best weights (after
    checking their sha256 against metrics.json unless `check` is off)."""
    path = check_run_folder(path)
    if check:
        verify_weights(path)
    return load_run_files(path)


def load_run_files(path: Path, weights_file: Path | None = None) -> LoadedRun:
    """The model of a run folder's setup files with `weights_file` (default: the run's
    weights) loaded; nothing checked (training uses it before metrics.json exists).

    A folder written before runs were lists of tasks (no tasks.json) is one `default` task
    whose labels are labels.json's and whose tokenizer settings are tokenizer.json's."""
    from xtune.config import parse_run_config
    from xtune.data.tokenization import TextEncoder
    from xtune.encoders import rebuild_encoder
    from xtune.encoders.prompt_injection import tune_encoder
    from xtune.model import build_task_graph
    from xtune.tasks import build_tasks

    raw = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    config = parse_run_config(raw, source=str(path / "config.yaml"), stored=True)
    records = task_records(path)
    encoder = rebuild_encoder(read_json(path / "encoder.json"), path)
    tune_encoder(encoder, config.finetune)  # a soft prompt and prefixes are part of the graph
    tasks = build_tasks(config.named_tasks())
    text_encoders = {}
    for task in tasks:
        task.labels = list(records[task.name]["labels"])
        text_encoders[task.name] = TextEncoder.from_settings(
            encoder.tokenizer, encoder.packing, records[task.name]["tokenizer"]
        )
    graph = build_task_graph(encoder, tasks)
    load_weights(graph.model, weights_file or path / WEIGHTS_FILE)
    thresholds, rules = stored_thresholds(path, {task.name: task.labels for task in tasks})
    preparations = read_preparations(path)
    for task in tasks:
        task.preparation = preparations.get(task.name)
    return LoadedRun(
        path, config, tasks, graph, text_encoders, encoder, thresholds, rules, preparations
    )


def read_json(file: Path) -> Any:
    """A JSON file training wrote; a damaged one (truncated, edited) is one clear error."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(
            f"{file}: damaged, not the JSON training wrote ({error}); retrain, or restore the file"
        ) from None


def task_records(path: Path) -> dict[str, Any]:
    """tasks.json, or the one `default` task of a folder from before it existed."""
    if (path / TASKS_FILE).is_file():
        return read_json(path / TASKS_FILE)
    labels = read_json(path / "labels.json")["labels"]
    tokenizer = read_json(path / "tokenizer.json")
    return {"default": {"labels": labels, "tokenizer": tokenizer}}


def stored_thresholds(
    path: Path, labels: dict[str, list[str]]
) -> tuple[dict[str, np.ndarray | None], dict[str, dict[str, Any]]]:
    """thresholds.json's served thresholds per task (in each task's label order) and its
    decision-rule records.

    `thresholds` is, by task, thresholds by label name (null: the task serves its default
    rule); older folders hold a bare list (a config without `tasks:`) or lists by task name,
    in label order, and always serve them.
    """
    names = list(labels)
    thresholds: dict[str, np.ndarray | None] = dict.fromkeys(names)
    file = path / "thresholds.json"
    if not file.is_file():
        return thresholds, {}
    content = json.loads(file.read_text(encoding="utf-8"))
    stored = content["thresholds"]
    if isinstance(stored, list):
        stored = {names[0]: stored}
    for name, values in stored.items():
        if isinstance(values, dict):
            missing = [label for label in labels[name] if label not in values]
            if missing:
                raise RunFolderError(
                    f"{file}: task {name!r} has no threshold for label(s) {', '.join(missing)}"
                )
            values = [values[label] for label in labels[name]]
        if values is not None:
            thresholds[name] = np.asarray(values, dtype=np.float32)
    return thresholds, content.get("decision_rules") or {}


def predict_texts(
    run: LoadedRun, task_name: str, texts: list[str], pairs: list[str] | None = None
) -> np.ndarray:
    """A task's model outputs for raw strings, tokenized as in training (for checks/tests)."""
    inputs = task_inputs(run, task_name, texts, pairs)
    return np.asarray(run.graph.task_models[task_name].predict_on_batch(inputs), np.float32)


def task_inputs(
    run: LoadedRun,
    task_name: str,
    texts: list[str],
    pairs: list[str] | None = None,
    round_to: int = 1,
) -> dict[str, np.ndarray]:
    """A task's padded model inputs for raw strings, prepared (`data.prepare`) and tokenized
    as in training: `text` and `text_pair` packed as one input, or a bi-encoder's two sides
    (`a_`, `b_`) each its own.
    Each side is padded to its longest row rounded up to a multiple of `round_to` (at most
    the max length): a predictor then traces few input shapes."""
    import tensorflow as tf

    text_encoder = run.text_encoders[task_name]
    preparation = run.preparations.get(task_name)
    if preparation is not None:  # `data.prepare`, as the training texts went through it
        texts, pairs = preparation.clean_all(texts), preparation.clean_all(pairs)
    if len(run.task(task_name).sides) == 2:
        sides = [("a_", texts, None), ("b_", pairs, None)]
    else:
        sides = [("", texts, pairs)]
    inputs = {}
    for prefix, first, second in sides:
        encoded = text_encoder(tf.constant(first), None if second is None else tf.constant(second))
        longest = int(encoded["token_ids"].row_lengths().numpy().max())
        length = min(text_encoder.max_length, -(-longest // round_to) * round_to)
        padded = text_encoder.pad(encoded, length)
        inputs.update({f"{prefix}{name}": np.asarray(value) for name, value in padded.items()})
    return inputs
