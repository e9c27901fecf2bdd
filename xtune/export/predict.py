"""`predict_file`: label a CSV/TSV/JSONL/XLSX table with one task of a run folder or of its
export (`xtune.export.saved_model`), whatever the number of tasks.

`task` names the task; it may be left out when the model has one task (a config without
`tasks:` has one, `default`). The input columns are the task's `data.text` (and
`data.text_pair`), as the run folder's config.yaml or the export's metadata records them.

The output holds every input column, then, by the task's decision rule and tuned thresholds
(`Task.serving_outputs`, the same in the run folder and in the export):

- a label task (classification, pair_classification, bi_encoder with a classifier):
  `predicted_labels`: the labels chosen, most probable first, joined with `|`;
  `top_labels`, `top_probabilities`: the `top_k` most probable labels and their
  probabilities (4 decimals), each joined with `|`, whatever the decision rule says;
  `prob_<label>`: one probability column per label, in the model's label order;
- a score task (regression, bi_encoder cosine): `score`, in the task's label units;

and `error`: empty for a predicted row; for a bad row (empty or undecodable text) the reason,
and no prediction. Bad rows are also listed on stderr by their 1-based data-row number.

Input columns with these names are replaced. The output is written to a temporary file
beside it and renamed into place, and is never the input file itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml

from xtune.data.readers import DataError
from xtune.export.path_columns import path_columns
from xtune.export.prediction_table import (
    ERROR_COLUMN,
    PredictionSummary,
    checked_paths,
    predict_rows,
    prediction_columns,
    read_table_inputs,
    write_predictions,
)

SCORE_COLUMN = "score"
OUTPUT_NAMES = ("probabilities", "predictions", SCORE_COLUMN)


class Predictor(Protocol):
    """One task of a model: raw texts (and pairs) -> numpy `probabilities` and `predictions`
    (a label task), or `score` (a score task, whose `labels` are empty)."""

    task: str
    labels: list[str]
    text_column: str
    text_pair_column: str | None
    file_columns: list[str] | None  # the run's `data.columns`: names of header-less files

    def predict(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]: ...


def chosen_task(model_dir: Path, names: list[str], task: str | None) -> str:
    """`task` when it is one of `names`, the only name when `task` is None; else one error
    line listing them."""
    if task is None and len(names) == 1:
        return names[0]
    if task in names:
        return task
    listed = ", ".join(names)
    if task is None:
        raise DataError(
            f"{model_dir}: a multi-task model; choose a task with --task (one of: {listed})"
        )
    raise DataError(f"{model_dir}: no task {task!r}; --task is one of: {listed}")


def served(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The numeric outputs of `Task.serving_outputs` (or of a signature) as numpy."""
    return {name: np.asarray(value) for name, value in outputs.items() if name in OUTPUT_NAMES}


def served_records(path: Path, records: dict[str, Any]) -> dict[str, Any]:
    """The task records that predict (an mlm task's record says `serves: false`)."""
    served = {name: record for name, record in records.items() if record.get("serves", True)}
    if not served:
        raise DataError(f"{path}: no task to predict (an mlm task predicts no labels or scores)")
    return served


class RunFolderPredictor:
    """A task of a run folder: its Keras model, text encoder, decision rule and thresholds.

    Names, columns and labels come from the small files; the model loads on the first batch,
    so a table without the needed columns is refused at once.
    """

    def __init__(self, path: Path, task: str | None):
        from xtune.run_folder import verify_weights
        from xtune.tasks.run_folder import task_records

        verify_weights(path)  # before reading the input: a damaged run fails at once
        records = served_records(path, task_records(path))
        self.path = path
        self.task = chosen_task(path, list(records), task)
        self.labels = list(records[self.task]["labels"])
        self.hierarchy = records[self.task].get("hierarchy")
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        # config.yaml, which the model is rebuilt from, says which columns the task reads.
        tasks = config.get("tasks") or {}
        data = (tasks[self.task].get("data") or {}) if self.task in tasks else config["data"]
        self.text_column = data.get("text") or "text"
        self.text_pair_column = data.get("text_pair") or None
        self.file_columns = data.get("columns") or config["data"].get("columns") or None
        self.run: Any = None

    def predict(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        import tensorflow as tf

        from xtune.export.saved_model import load_float32_run
        from xtune.tasks.run_folder import task_inputs

        if self.run is None:
            self.run = load_float32_run(self.path)
        task = self.run.task(self.task)
        # Pad to a multiple of 16 so only max_length / 16 input shapes are ever traced.
        inputs = task_inputs(self.run, self.task, texts, pairs, round_to=16)
        outputs = self.run.graph.task_models[self.task].predict_on_batch(inputs)
        thresholds = self.run.thresholds.get(self.task)
        return served(task.serving_outputs(tf.constant(outputs), thresholds))


class SavedModelPredictor:
    """A task of an `xtune export` folder, through its signature; names, columns and labels
    come from export.json (its `tasks`, or, in an export from before tasks, its top level);
    the SavedModel loads on the first batch."""

    def __init__(self, path: Path, task: str | None):
        from xtune.export.saved_model import EXPORT_FILE

        metadata_file = path / EXPORT_FILE
        if not metadata_file.is_file():
            raise DataError(f"{path}: a SavedModel without {EXPORT_FILE}; not an xtune export")
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if not metadata.get("text_inputs", False):
            raise DataError(
                f"{path}: this export takes token ids only; predict needs an `xtune export` "
                "that takes raw text"
            )
        records = metadata.get("tasks") or {"default": metadata}
        self.path = path
        self.task = chosen_task(path, list(records), task)
        record = records[self.task]
        self.signature = (record.get("signatures") or {}).get("serve", "serving_default")
        self.labels = list(record["labels"])
        self.hierarchy = record.get("hierarchy")
        columns = record.get("columns") or {
            "text": record["text_column"],
            "text_pair": record.get("text_pair_column"),
        }
        self.text_column = columns["text"]
        self.text_pair_column = columns.get("text_pair") or None
        self.file_columns = record.get("file_columns") or None
        self.serve: Any = None

    def predict(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        import tensorflow as tf

        if self.serve is None:
            import tensorflow_text  # noqa: F401  (registers the tokenizer ops of the graph)

            self.serve = tf.saved_model.load(str(self.path)).signatures[self.signature]
        feed = {"text": tf.constant(texts, tf.string)}
        if pairs is not None:
            feed["text_pair"] = tf.constant(pairs, tf.string)
        return served(self.serve(**feed))


def open_predictor(model_dir: str | Path, task: str | None = None) -> Predictor:
    """A run folder (config.yaml + weights) or an exported SavedModel (saved_model.pb)."""
    from xtune.run_folder import check_run_folder

    path = Path(model_dir).expanduser()
    if (path / "saved_model.pb").is_file():
        return SavedModelPredictor(path, task)
    return RunFolderPredictor(check_run_folder(path), task)


def predict_file(
    model_dir: str | Path,
    input: str | Path,
    output: str | Path,
    batch_size: int = 64,
    top_k: int = 3,
    verbose: int = 1,
    task: str | None = None,
) -> PredictionSummary:
    """Predict every row of `input` with `task` of the model and write `output` (format by
    suffix); see the module docstring."""
    input_path, output_path = checked_paths(model_dir, input, output, batch_size, top_k)
    predictor = open_predictor(model_dir, task)
    columns = [predictor.text_column]
    if predictor.text_pair_column:
        columns.append(predictor.text_pair_column)
    frame, texts, pairs, good_rows, errors = read_table_inputs(
        input_path, columns, predictor.file_columns
    )
    outputs = empty_outputs(predictor.labels, len(frame))
    predict_rows(predictor.predict, outputs, texts, pairs, good_rows, batch_size, verbose)
    result = output_columns(predictor.labels, outputs, errors, top_k)
    if getattr(predictor, "hierarchy", None):
        paths = path_columns(
            predictor.hierarchy, predictor.labels, outputs["probabilities"],
            outputs["predictions"], errors,
        )  # fmt: skip
        errors_column = result[[ERROR_COLUMN]]
        result = pd.concat([result.drop(columns=ERROR_COLUMN), paths, errors_column], axis=1)
    return write_predictions(frame, result, input_path, output_path, errors, verbose)


def empty_outputs(labels: list[str], rows: int) -> dict[str, np.ndarray]:
    """Output arrays before prediction: NaN scores and no labels (what bad rows keep)."""
    if not labels:
        return {SCORE_COLUMN: np.full(rows, np.nan, dtype=np.float32)}
    return {
        "probabilities": np.full((rows, len(labels)), np.nan, dtype=np.float32),
        "predictions": np.zeros((rows, len(labels)), dtype=np.int32),
    }


def output_columns(
    labels: list[str], outputs: dict[str, np.ndarray], errors: list[str], top_k: int
) -> pd.DataFrame:
    if labels:
        return prediction_columns(
            labels, outputs["probabilities"], outputs["predictions"], errors, top_k
        )
    scores = np.round(outputs[SCORE_COLUMN].astype(float), 6)
    return pd.DataFrame({SCORE_COLUMN: scores, ERROR_COLUMN: errors})
