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
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml

from xtune.data.examples import BadRow, clean_text
from xtune.data.readers import DataError, detect_format, read_table

PROBABILITY_PREFIX = "prob_"
ERROR_COLUMN = "error"
BAD_ROWS_SHOWN = 10


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


@dataclass
class PredictionSummary:
    output: Path
    rows: int
    bad_rows: list[str] = field(default_factory=list)


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
    from xtune.export.predict_multitask import is_multitask_model, predict_task_file

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


def checked_paths(
    model_dir: str | Path, input: str | Path, output: str | Path, batch_size: int, top_k: int
) -> tuple[Path, Path]:
    """The input and output paths, refused before any model loads when the output would
    overwrite the input, lie inside the model folder, or has an unknown format."""
    if batch_size < 1 or top_k < 1:
        raise DataError(f"batch_size and top_k must be positive; got {batch_size}, {top_k}")
    input_path, output_path = Path(input), Path(output)
    if same_file(input_path, output_path):
        raise DataError(
            f"{output_path}: --output is the input file; predict never overwrites its input, "
            "choose another output path"
        )
    model_path = Path(model_dir).expanduser().resolve()
    if model_path == output_path.resolve() or model_path in output_path.resolve().parents:
        raise DataError(
            f"{output_path}: --output lies inside the model folder {model_dir}, which predict "
            "never changes; choose another output path"
        )
    detect_format(output_path)
    return input_path, output_path


def read_table_inputs(
    input_path: Path, columns: list[str]
) -> tuple[pd.DataFrame, list[str], list[str] | None, list[int], list[str]]:
    """The input table and `read_inputs` of its text columns (a missing one is refused)."""
    frame = read_table(input_path, encoding_errors="replace")
    for column in columns:
        if column not in frame.columns:
            raise DataError(
                f"{input_path}: column {column!r} (the model's text input) not found; the "
                f"file has columns: {', '.join(map(str, frame.columns))}"
            )
    return frame, *read_inputs(frame, columns)


def predict_rows(
    predict: Any,
    outputs: dict[str, np.ndarray],
    texts: list[str],
    pairs: list[str] | None,
    good_rows: list[int],
    batch_size: int,
    verbose: int,
) -> None:
    """Fill the rows `good_rows` of each `outputs` array from `predict(texts, pairs)`'s
    arrays of the same names, `batch_size` rows a call, with a progress bar."""
    import keras

    progress = keras.utils.Progbar(len(good_rows), unit_name="row", verbose=verbose)
    for start in range(0, len(good_rows), batch_size):
        rows = good_rows[start : start + batch_size]
        batch_pairs = None if pairs is None else [pairs[i] for i in rows]
        batch = predict([texts[i] for i in rows], batch_pairs)
        for name, values in outputs.items():
            values[rows] = batch[name]
        progress.add(len(rows))


def write_predictions(
    frame: pd.DataFrame,
    result: pd.DataFrame,
    input_path: Path,
    output_path: Path,
    errors: list[str],
    verbose: int,
) -> PredictionSummary:
    """Write the input table with the `result` columns (replacing input columns of the same
    names) and list the bad rows on stderr."""
    bad_rows = [
        f"{input_path}: row {row + 1}: {error}" for row, error in enumerate(errors) if error
    ]
    replaced = [c for c in result.columns if c in frame.columns]
    if replaced and verbose:
        print(f"xtune predict: replacing input column(s) {', '.join(replaced)}", file=sys.stderr)
    table = pd.concat([frame.drop(columns=replaced), result], axis=1)
    write_table(table, output_path, detect_format(output_path))
    if bad_rows:
        shown = "\n  ".join(bad_rows[:BAD_ROWS_SHOWN])
        more = len(bad_rows) - BAD_ROWS_SHOWN
        print(
            f"xtune predict: {len(bad_rows)} bad row(s) written with an {ERROR_COLUMN!r} and no "
            f"prediction:\n  {shown}" + (f"\n  ... and {more} more" if more > 0 else ""),
            file=sys.stderr,
        )
    if verbose:
        print(f"xtune predict: {len(frame)} rows -> {output_path}", flush=True)
    return PredictionSummary(output_path, len(frame), bad_rows)


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (through links, `..` and case-folding file systems)."""
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def read_inputs(
    frame: pd.DataFrame, columns: list[str]
) -> tuple[list[str], list[str] | None, list[int], list[str]]:
    """Cleaned texts (and pairs), the positions of usable rows, and one error per row ("")."""
    texts, pairs, good_rows, errors = [], [], [], []
    for position, record in enumerate(frame[columns].to_dict("records")):
        try:
            text = clean_text(record[columns[0]], "text")
            pair = clean_text(record[columns[1]], "text_pair") if len(columns) > 1 else ""
        except BadRow as error:
            text, pair = "", ""
            errors.append(str(error))
        else:
            good_rows.append(position)
            errors.append("")
        texts.append(text)
        pairs.append(pair)
    return texts, pairs if len(columns) > 1 else None, good_rows, errors


def prediction_columns(
    labels: list[str],
    probabilities: np.ndarray,
    predictions: np.ndarray,
    errors: list[str],
    top_k: int,
) -> pd.DataFrame:
    names = np.asarray(labels, dtype=object)
    predicted, top_labels, top_probabilities = [], [], []
    for row_probabilities, row_predictions, error in zip(
        probabilities, predictions, errors, strict=True
    ):
        if error:
            predicted.append("")
            top_labels.append("")
            top_probabilities.append("")
            continue
        order = np.argsort(-row_probabilities, kind="stable")
        predicted.append("|".join(names[[i for i in order if row_predictions[i]]]))
        top = order[:top_k]
        top_labels.append("|".join(names[top]))
        top_probabilities.append("|".join(f"{p:.4f}" for p in row_probabilities[top]))
    columns: dict[str, Any] = {
        "predicted_labels": predicted,
        "top_labels": top_labels,
        "top_probabilities": top_probabilities,
    }
    for index, label in enumerate(labels):
        columns[f"{PROBABILITY_PREFIX}{label}"] = np.round(probabilities[:, index].astype(float), 6)
    columns[ERROR_COLUMN] = errors
    return pd.DataFrame(columns)


def write_table(table: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write through a temporary file in the same folder, then rename it into place; a full
    or unwritable disk is one error and leaves no temporary file."""
    from xtune.run_folder import write_errors_reported, write_through_temporary

    if fmt not in ("csv", "tsv", "jsonl", "xlsx"):
        raise DataError(f"{path}: cannot write format {fmt!r}; use csv, tsv, jsonl or xlsx")

    def write(temporary: Path) -> None:
        if fmt in ("csv", "tsv"):
            table.to_csv(temporary, sep="," if fmt == "csv" else "\t", index=False)
        elif fmt == "jsonl":
            table.to_json(temporary, orient="records", lines=True, force_ascii=False)
        else:
            table.to_excel(temporary, index=False, engine="openpyxl")

    with write_errors_reported(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_through_temporary(path, write)
