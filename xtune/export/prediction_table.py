"""The prediction table: reading the rows to predict, predicting them in batches, and
writing the input columns plus the prediction columns (see `xtune.export.predict`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xtune.data.examples import BadRow, Undecodable, row_text
from xtune.data.readers import UNDECODABLE, DataError, detect_format, read_table

PROBABILITY_PREFIX = "prob_"
ERROR_COLUMN = "error"
BAD_ROWS_SHOWN = 10
REPLACEMENT_CHARACTER = "\ufffd"  # how an undecodable input byte appears in the output


@dataclass
class PredictionSummary:
    output: Path
    rows: int
    bad_rows: list[str] = field(default_factory=list)


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
    if output_path.is_dir():
        raise DataError(
            f"{output_path}: --output is a folder; name the file to write, e.g. "
            f"{output_path / 'predictions.csv'} (.csv, .tsv, .jsonl or .xlsx)"
        )
    detect_format(output_path)
    return input_path, output_path


def read_table_inputs(
    input_path: Path, columns: list[str], file_columns: list[str] | None = None
) -> tuple[pd.DataFrame, list[str], list[str] | None, list[int], list[str]]:
    """The input table and `read_inputs` of its text columns (a missing one is refused).

    A file whose header lacks the text columns is read as header-less with `file_columns`
    (the run's `data.columns`) when the run was trained on such files."""
    # Undecodable bytes are marked where decoding fails; a file's own U+FFFD is text.
    frame = read_table(input_path, encoding_errors="mark")
    if file_columns and not set(columns) <= set(map(str, frame.columns)):
        frame = read_table(input_path, columns=file_columns, encoding_errors="mark")
    for column in columns:
        if column not in frame.columns:
            raise DataError(
                f"{input_path}: column {column!r} (the model's text input) not found; the "
                f"file has columns: {', '.join(map(str, frame.columns))}"
            )
    inputs = read_inputs(frame, columns)
    return frame.map(writable), *inputs


def writable(value: Any) -> Any:
    """A cell as the output file can hold it: each undecodable byte shown as U+FFFD."""
    return UNDECODABLE.sub(REPLACEMENT_CHARACTER, value) if isinstance(value, str) else value


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
            text = row_text(record[columns[0]], "text")
            pair = row_text(record[columns[1]], "text_pair") if len(columns) > 1 else ""
        except BadRow as error:
            text, pair = "", ""
            # The input is read as UTF-8 (predict has no data.encoding).
            errors.append(f"{error} UTF-8" if isinstance(error, Undecodable) else str(error))
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
