"""`predict_file`: label a CSV/TSV/JSONL/XLSX table with a run folder or an exported SavedModel.

The output holds every input column, then:

- `predicted_labels`: the labels chosen by the run's decision rule and thresholds, most
  probable first, joined with `|`;
- `top_labels`, `top_probabilities`: the `top_k` most probable labels and their
  probabilities (4 decimals), each joined with `|`, whatever the decision rule says;
- `prob_<label>`: one probability column per label, in the model's label order;
- `error`: empty for a labelled row; for a bad row (empty or undecodable text) the reason,
  and no prediction. Bad rows are also listed on stderr by their 1-based data-row number.

A multi-task model predicts the one task named by `task` (`xtune.export.predict_multitask`).

Input columns with these names are replaced. The output is written to a temporary file
beside it and renamed into place, and is never the input file itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from xtune.data.readers import DataError
from xtune.export.predict_multitask import is_multitask_model, predict_task_file
from xtune.export.prediction_table import (
    PredictionSummary,
    checked_paths,
    predict_rows,
    prediction_columns,
    read_table_inputs,
    write_predictions,
)


class Predictor(Protocol):
    """Raw texts (and pairs) -> probabilities and 0/1 predictions, float32 / int32 numpy."""

    labels: list[str]
    text_column: str
    text_pair_column: str | None

    def predict(
        self, texts: list[str], pairs: list[str] | None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class RunFolderPredictor:
    """The Keras model of a run folder, with the run's `TextEncoder`, loss and thresholds.

    Column names and labels come from the small files; the model loads on the first batch,
    so a table without the needed columns is refused at once.
    """

    def __init__(self, path: Path):
        from xtune.run_folder import verify_weights

        verify_weights(path)  # before reading the input: a damaged run fails at once
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        self.path = path
        self.labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))["labels"]
        self.text_column = config["data"]["text"]
        self.text_pair_column = config["data"].get("text_pair") or None
        self.run: Any = None

    def predict(self, texts: list[str], pairs: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        from xtune.export.saved_model import load_float32_run

        if self.run is None:
            self.run = load_float32_run(self.path)
        text_encoder = self.run.text_encoder
        encoded = text_encoder(tf.constant(texts), None if pairs is None else tf.constant(pairs))
        # Pad to a multiple of 16 so only max_length / 16 input shapes are ever traced.
        longest = int(encoded["token_ids"].row_lengths().numpy().max())
        length = min(text_encoder.max_length, -(-longest // 16) * 16)
        logits = self.run.model.predict_on_batch(text_encoder.pad(encoded, length))
        probabilities = np.asarray(self.run.loss.scores(logits), dtype=np.float32)
        predictions = np.asarray(self.run.loss.decide(probabilities, self.run.thresholds))
        return probabilities, predictions


class SavedModelPredictor:
    """An `xtune export` folder, called through its `serving_default` signature.

    Column names and labels come from export.json; the SavedModel loads on the first batch.
    """

    def __init__(self, path: Path):
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
        self.path = path
        self.labels = list(metadata["labels"])
        self.text_column = metadata["text_column"]
        self.text_pair_column = metadata.get("text_pair_column") or None
        self.serve: Any = None

    def predict(self, texts: list[str], pairs: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        if self.serve is None:
            import tensorflow_text  # noqa: F401  (registers the tokenizer ops of the graph)

            self.serve = tf.saved_model.load(str(self.path)).signatures["serving_default"]
        feed = {"text": tf.constant(texts, tf.string)}
        if pairs is not None:
            feed["text_pair"] = tf.constant(pairs, tf.string)
        outputs = self.serve(**feed)
        return outputs["probabilities"].numpy(), outputs["predictions"].numpy()


def open_predictor(model_dir: str | Path) -> Predictor:
    """A run folder (config.yaml + weights) or an exported SavedModel (saved_model.pb)."""
    from xtune.run_folder import check_run_folder

    path = Path(model_dir).expanduser()
    if (path / "saved_model.pb").is_file():
        return SavedModelPredictor(path)
    return RunFolderPredictor(check_run_folder(path))


def predict_file(
    model_dir: str | Path,
    input: str | Path,
    output: str | Path,
    batch_size: int = 64,
    top_k: int = 3,
    verbose: int = 1,
    task: str | None = None,
) -> PredictionSummary:
    """Predict every row of `input` and write `output` (format by suffix); see the module doc.
    `task` names the task of a multi-task model (`xtune.export.predict_multitask`)."""
    input_path, output_path = checked_paths(model_dir, input, output, batch_size, top_k)
    if task is not None or is_multitask_model(model_dir):
        return predict_task_file(
            model_dir, task, input_path, output_path, batch_size, top_k, verbose
        )
    predictor = open_predictor(model_dir)
    columns = [predictor.text_column]
    if predictor.text_pair_column:
        columns.append(predictor.text_pair_column)
    frame, texts, pairs, good_rows, errors = read_table_inputs(input_path, columns)
    num_labels = len(predictor.labels)
    outputs = {
        "probabilities": np.full((len(frame), num_labels), np.nan, dtype=np.float32),
        "predictions": np.zeros((len(frame), num_labels), dtype=np.int32),
    }

    def predict(texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        return dict(zip(outputs, predictor.predict(texts, pairs), strict=True))

    predict_rows(predict, outputs, texts, pairs, good_rows, batch_size, verbose)
    result = prediction_columns(
        predictor.labels, outputs["probabilities"], outputs["predictions"], errors, top_k
    )
    return write_predictions(frame, result, input_path, output_path, errors, verbose)
