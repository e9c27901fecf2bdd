"""`xtune predict --task NAME`: label a table with one task of a multi-task run folder
(`xtune.tasks.run_folder`) or of its export (`xtune.export.multitask`: a signature per task).

The input columns are the task's `data.text` (and `data.text_pair`), as the run folder's
config and the export metadata (`columns` of each task) record them. An export written
before the metadata kept them reads them from the config of the run folder it names while
that folder is there, else they are the signature's inputs `text` and `text_pair`.

The output holds every input column, then, by the task's own decision rule
(`Task.serving_outputs`, the same in the run folder and in the export):

- a label task (classification, pair_classification, bi_encoder with a classifier): the
  columns of single-task predict (`predicted_labels`, `top_labels`, `top_probabilities`,
  `prob_<label>`; `xtune.export.predict.prediction_columns`);
- a score task (regression, bi_encoder cosine): `score`, in the task's label units;

and `error`, as in `xtune.export.predict`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml

from xtune.data.readers import DataError
from xtune.export.prediction_table import (
    ERROR_COLUMN,
    PredictionSummary,
    predict_rows,
    prediction_columns,
    read_table_inputs,
    write_predictions,
)

SCORE_COLUMN = "score"
OUTPUT_NAMES = ("probabilities", "predictions", SCORE_COLUMN)


class TaskPredictor(Protocol):
    """One task of a multi-task model: raw texts (and pairs) -> `probabilities` and
    `predictions` (a label task), or `score` (a score task; `labels` is then empty)."""

    task: str
    labels: list[str]
    text_column: str
    text_pair_column: str | None

    def predict(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]: ...


def is_multitask_model(model_dir: str | Path) -> bool:
    """A multi-task run folder (tasks.json) or a multi-task export (its metadata file)."""
    from xtune.tasks.run_folder import is_multitask_run

    path = Path(model_dir).expanduser()
    if (path / "saved_model.pb").is_file():
        from xtune.export.multitask import EXPORT_FILE

        return (path / EXPORT_FILE).is_file()
    return is_multitask_run(path)


def chosen_task(model_dir: Path, names: list[str], task: str | None) -> str:
    """`task` when it is one of `names`; else one error line listing them."""
    if task in names:
        return task
    listed = ", ".join(names)
    if task is None:
        raise DataError(
            f"{model_dir}: a multi-task model; choose a task with --task (one of: {listed})"
        )
    raise DataError(f"{model_dir}: no task {task!r}; --task is one of: {listed}")


def config_columns(config: dict[str, Any], task: str) -> tuple[str, str | None]:
    """A task's `data.text` and `data.text_pair` in a run folder's config.yaml (merged)."""
    data = config["tasks"][task].get("data") or {}
    return data.get("text") or "text", data.get("text_pair") or None


def served(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The numeric outputs of `Task.serving_outputs` (or of a signature) as numpy."""
    return {name: np.asarray(value) for name, value in outputs.items() if name in OUTPUT_NAMES}


class RunFolderTaskPredictor:
    """A task of a multi-task run folder, through `load_run` and `predict_texts`;
    the model loads on the first batch (after the names and columns are checked)."""

    def __init__(self, path: Path, task: str | None):
        from xtune.run_folder import verify_weights
        from xtune.tasks.run_folder import TASKS_FILE

        verify_weights(path)  # before reading the input: a damaged run fails at once
        records = json.loads((path / TASKS_FILE).read_text(encoding="utf-8"))
        self.path = path
        self.task = chosen_task(path, list(records), task)
        self.labels = list(records[self.task]["labels"])
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        self.text_column, self.text_pair_column = config_columns(config, self.task)
        self.run: Any = None

    def predict(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        import tensorflow as tf

        from xtune.tasks.run_folder import predict_texts

        if self.run is None:
            self.run = load_float32_multitask_run(self.path)
        task = next(task for task in self.run.tasks if task.name == self.task)
        outputs = predict_texts(self.run, self.task, texts, pairs)
        return served(task.serving_outputs(tf.constant(outputs)))


def load_float32_multitask_run(path: Path) -> Any:
    """`load_run` in float32 whatever the global policy (weights checked before)."""
    import keras

    from xtune.tasks.run_folder import load_run

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return load_run(path, check=False)
    finally:
        keras.mixed_precision.set_global_policy(policy)


class SavedModelTaskPredictor:
    """A task of a multi-task export, through its signature named after the task; the
    SavedModel loads on the first batch."""

    def __init__(self, path: Path, task: str | None):
        from xtune.export.multitask import EXPORT_FILE

        metadata = json.loads((path / EXPORT_FILE).read_text(encoding="utf-8"))
        self.path = path
        self.task = chosen_task(path, list(metadata["tasks"]), task)
        self.labels = list(metadata["tasks"][self.task]["labels"])
        pair = "text_pair" in signature_inputs(path, self.task)
        self.text_column, self.text_pair_column = export_columns(metadata, self.task, pair)
        self.loaded: Any = None

    def predict(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        import tensorflow as tf

        if self.loaded is None:
            import tensorflow_text  # noqa: F401  (registers the tokenizer ops of the graph)

            self.loaded = tf.saved_model.load(str(self.path))
        feed = {"text": tf.constant(texts, tf.string)}
        if pairs is not None:
            feed["text_pair"] = tf.constant(pairs, tf.string)
        return served(self.loaded.signatures[self.task](**feed))


def signature_inputs(path: Path, name: str) -> set[str]:
    """The input names of a signature, read from saved_model.pb without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    model.ParseFromString((path / "saved_model.pb").read_bytes())
    return set(model.meta_graphs[0].signature_def[name].inputs)


def export_columns(metadata: dict[str, Any], task: str, pair: bool) -> tuple[str, str | None]:
    """The task's columns as the export metadata records them; for an older export, those of
    the config of the run folder it names, while that folder is there and agrees on `pair`;
    else the signature's input names."""
    recorded = metadata["tasks"][task].get("columns")
    if recorded and bool(recorded.get("text_pair")) == pair:
        return recorded["text"], recorded.get("text_pair")
    config_file = Path(metadata["run_dir"]) / "config.yaml" if metadata.get("run_dir") else None
    if config_file is not None and config_file.is_file():
        config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        if task in (config.get("tasks") or {}):
            text, text_pair = config_columns(config, task)
            if bool(text_pair) == pair:
                return text, text_pair
    return "text", "text_pair" if pair else None


def open_task_predictor(model_dir: str | Path, task: str | None) -> TaskPredictor:
    """A multi-task run folder or export, for `task`; refuses `task` for a single-task model."""
    from xtune.run_folder import check_run_folder, verify_weights

    path = Path(model_dir).expanduser()
    if not is_multitask_model(path):
        if not (path / "saved_model.pb").is_file():  # a missing or damaged model says so
            verify_weights(check_run_folder(path))
        raise DataError(f"{model_dir}: a single-task model has one task; drop --task {task}")
    if (path / "saved_model.pb").is_file():
        return SavedModelTaskPredictor(path, task)
    return RunFolderTaskPredictor(check_run_folder(path), task)


def predict_task_file(
    model_dir: str | Path,
    task: str | None,
    input_path: Path,
    output_path: Path,
    batch_size: int,
    top_k: int,
    verbose: int,
) -> PredictionSummary:
    """`predict_file` for one task of a multi-task model (paths already checked there)."""
    predictor = open_task_predictor(model_dir, task)
    columns = [predictor.text_column]
    if predictor.text_pair_column:
        columns.append(predictor.text_pair_column)
    frame, texts, pairs, good_rows, errors = read_table_inputs(input_path, columns)
    outputs = empty_outputs(predictor.labels, len(frame))
    predict_rows(predictor.predict, outputs, texts, pairs, good_rows, batch_size, verbose)
    result = task_prediction_columns(predictor.labels, outputs, errors, top_k)
    return write_predictions(frame, result, input_path, output_path, errors, verbose)


def empty_outputs(labels: list[str], rows: int) -> dict[str, np.ndarray]:
    """Output arrays before prediction: NaN scores and no labels (what bad rows keep)."""
    if not labels:
        return {SCORE_COLUMN: np.full(rows, np.nan, dtype=np.float32)}
    return {
        "probabilities": np.full((rows, len(labels)), np.nan, dtype=np.float32),
        "predictions": np.zeros((rows, len(labels)), dtype=np.int32),
    }


def task_prediction_columns(
    labels: list[str], outputs: dict[str, np.ndarray], errors: list[str], top_k: int
) -> pd.DataFrame:
    if labels:
        return prediction_columns(
            labels, outputs["probabilities"], outputs["predictions"], errors, top_k
        )
    scores = np.round(outputs[SCORE_COLUMN].astype(float), 6)
    return pd.DataFrame({SCORE_COLUMN: scores, ERROR_COLUMN: errors})
