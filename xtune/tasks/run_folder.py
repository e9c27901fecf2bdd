"""The run folder of a multi-task run: the single-task files plus `tasks.json`.

config.yaml (with `tasks:`), encoder.json + tokenizer files, tokenizer.json (the first task's
tokenizer settings, for tools that read one), tasks.json ({name: type, labels, metric,
tokenizer settings}), labels.json ({"labels": [], "tasks": {name: labels}}), model.weights.h5
(every task's head and the shared encoder), history.json/csv, metrics.json (best per task
and the mean score). `load_multitask_run` rebuilds the model and loads the weights after
checking their sha256.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xtune.run_folder import (
    WEIGHTS_FILE,
    RunFolder,
    check_run_folder,
    load_weights,
    verify_weights,
    write_atomic,
)

TASKS_FILE = "tasks.json"


def is_multitask_run(path: str | Path) -> bool:
    return (Path(path) / TASKS_FILE).is_file()


def create_run_folder(path: str | Path, config: Any, prepared: Any) -> RunFolder:
    folder = RunFolder.create(path)
    write_atomic(folder.path / "config.yaml", config.to_yaml())
    records = {
        task.name: {**task.record(), "tokenizer": task.text_encoder(prepared.encoder).settings()}
        for task in prepared.tasks
    }
    write_atomic(folder.path / TASKS_FILE, json.dumps(records, indent=1, ensure_ascii=False))
    labels = {"labels": [], "tasks": {task.name: task.labels for task in prepared.tasks}}
    write_atomic(folder.path / "labels.json", json.dumps(labels, indent=1, ensure_ascii=False))
    stored = folder.write_tokenizer_files(prepared.encoder)
    write_atomic(folder.path / "encoder.json", json.dumps(stored, indent=1, default=str))
    first = next(iter(records.values()))["tokenizer"]
    write_atomic(folder.path / "tokenizer.json", json.dumps(first, indent=1))
    return folder


def write_run(
    folder: RunFolder,
    config: Any,
    prepared: Any,
    evaluation: Any,
    parameters: dict[str, int],
    started: float,
    fit_seconds: float,
    samples: int,
    precision: str,
) -> Any:
    """Best weights, then history and metrics.json; returns the `RunResult`."""
    from xtune.training.multitask import flat_metrics
    from xtune.training.trainer import RunResult, device_name

    if config.training.save_weights:
        folder.write_weights(prepared.net.model)
    train_seconds = sum(record["train_seconds"] for record in evaluation.history)
    # Dev and test are scored as the export serves them: in float32.
    served = served_prepared(prepared, precision, folder, config.training.save_weights)
    metrics, mean_score = evaluation.best_metrics, evaluation.best_value
    if served is not prepared:
        evaluation.prepared = served
        metrics = evaluation.evaluate()
        mean_score = evaluation.mean_score(metrics)
    best = {"mean_score": mean_score, **flat_metrics(metrics)}
    test = test_metrics(served, config.training.eval_batch_size)
    result = RunResult(
        run_dir=folder.path,
        history=evaluation.history,
        best_epoch=evaluation.best_epoch,
        best=best,
        tuned=None,
        test=test,
        baseline={},
        parameters=parameters,
        seconds=round(time.perf_counter() - started, 3),
        train_samples_per_second=round(samples / train_seconds, 2) if train_seconds else 0.0,
        device=device_name(),
        extra={
            "precision": precision,
            "eval_precision": "float32",  # of `best` and `test`; the history's: `precision`
            "fit_seconds": round(fit_seconds, 3),
            "tasks": {
                task.name: {"type": task.type_name, "metric": task.metric, "weight": task.weight}
                for task in prepared.tasks
            },
        },
    )
    warnings = [note for data in prepared.data.values() for note in data.warnings]
    if warnings:
        result.extra["data_warnings"] = warnings
    folder.write_result(result, None)
    print(
        f"\nbest epoch {result.best_epoch} by the mean score {evaluation.best_value:.4f}; "
        f"dev (float32) mean {mean_score:.4f}; "
        + "; ".join(
            f"{task.name} {task.metric} {best[f'{task.name}.{task.metric}']:.4f}"
            for task in prepared.tasks
        )
        + f"; {result.seconds:.1f} s in all; run folder {folder.path}",
        flush=True,
    )
    return result


def served_prepared(prepared: Any, precision: str, folder: RunFolder, saved: bool) -> Any:
    """`prepared` with the model rebuilt in float32 from the run folder's files (the way the
    export loads it) when it trained in mixed precision, as the single-task `served_model`;
    from a scratch weights file when `training.save_weights` is off."""
    import dataclasses
    import tempfile

    import keras

    from xtune.run_folder import save_model_weights

    if precision == "float32":
        return prepared
    keras.mixed_precision.set_global_policy("float32")
    try:
        if saved:
            run = load_multitask_files(folder.path, folder.path / WEIGHTS_FILE)
        else:
            with tempfile.TemporaryDirectory() as scratch:
                weights = Path(scratch) / WEIGHTS_FILE
                save_model_weights(prepared.net.model, weights)
                run = load_multitask_files(folder.path, weights)
    finally:
        keras.mixed_precision.set_global_policy(precision)
    return dataclasses.replace(prepared, tasks=run.tasks, net=run.net, encoder=run.encoder)


def test_metrics(prepared: Any, batch_size: int) -> dict[str, float] | None:
    """Test-split metrics of the tasks that have one (best weights), flat `task.metric`."""
    from xtune.training.multitask import flat_metrics

    metrics = {}
    for task in prepared.tasks:
        split = prepared.data[task.name].splits.get("test")
        if split is not None:
            outputs = task.predict(prepared.net.task_models[task.name], split, batch_size)
            metrics[task.name] = task.evaluate(split.targets, outputs)
    return flat_metrics(metrics) if metrics else None


@dataclass
class MultiTaskRun:
    """A trained multi-task run: its tasks (labels set), the model views, text encoders."""

    path: Path
    config: Any
    tasks: list[Any]
    net: Any
    text_encoders: dict[str, Any]
    encoder: Any


def load_multitask_run(path: str | Path, check: bool = True) -> MultiTaskRun:
    """Rebuild a finished multi-task run's model from its folder and load its best weights
    (after checking their sha256 against metrics.json unless `check` is off)."""
    path = check_run_folder(path)
    if check:
        verify_weights(path)
    return load_multitask_files(path, path / WEIGHTS_FILE)


def load_multitask_files(path: Path, weights_file: Path) -> MultiTaskRun:
    """The model of a run folder's setup files with `weights_file` loaded; nothing checked
    (training uses it before metrics.json exists)."""
    from xtune.config import parse_run_config
    from xtune.data.tokenization import TextEncoder
    from xtune.encoders import rebuild_encoder
    from xtune.tasks import build_tasks
    from xtune.tasks.multitask_model import build_multitask_model

    raw = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    config = parse_run_config(raw, source=str(path / "config.yaml"))
    records = json.loads((path / TASKS_FILE).read_text(encoding="utf-8"))
    encoder = rebuild_encoder(json.loads((path / "encoder.json").read_text()), path)
    tasks = build_tasks(config.tasks)
    text_encoders = {}
    for task in tasks:
        task.labels = list(records[task.name]["labels"])
        text_encoders[task.name] = TextEncoder.from_settings(
            encoder.tokenizer, encoder.packing, records[task.name]["tokenizer"]
        )
    net = build_multitask_model(encoder, tasks)
    load_weights(net.model, weights_file)
    return MultiTaskRun(path, config, tasks, net, text_encoders, encoder)


def predict_texts(
    run: MultiTaskRun, task_name: str, texts: list[str], pairs: list[str] | None = None
) -> np.ndarray:
    """A task's model outputs for raw strings, tokenized as in training (for checks/tests)."""
    import tensorflow as tf

    task = next(task for task in run.tasks if task.name == task_name)
    text_encoder = run.text_encoders[task_name]
    model = run.net.task_models[task_name]
    if len(task.sides) == 2:
        inputs = {}
        for side, values in (("a_", texts), ("b_", pairs)):
            encoded = text_encoder.pad(text_encoder(tf.constant(values)))
            inputs.update({f"{side}{k}": v for k, v in encoded.items()})
    else:
        args = [tf.constant(texts)] + ([tf.constant(pairs)] if pairs is not None else [])
        inputs = text_encoder.pad(text_encoder(*args))
    return np.asarray(model.predict_on_batch(inputs), np.float32)
