"""The run folder's per-label tables: precision, recall, F1, support and threshold of every
label under the rule the run serves (`per_label.csv`), and for single-label tasks the dev
confusion matrix (`confusion_matrix.csv`; `confusion_matrix.<task>.csv` for named tasks)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from xtune.metrics import per_label_report
from xtune.run_folder import write_atomic

PER_LABEL_FILE = "per_label.csv"
PER_LABEL_COLUMNS = (
    "task",
    "split",
    "label",
    "precision",
    "recall",
    "f1",
    "support",
    "predicted",
    "threshold",
)


def per_label_rows(
    task: str,
    split: str,
    labels: list[str],
    targets: np.ndarray,
    predictions: np.ndarray,
    thresholds: Any,
) -> list[dict[str, Any]]:
    """One row per label; `threshold` is the served one (empty for a top-1 loss)."""
    cuts = [""] * len(labels) if thresholds is None else np.broadcast_to(thresholds, len(labels))
    return [
        {
            "task": task,
            "split": split,
            **row,
            "precision": round(row["precision"], 6),
            "recall": round(row["recall"], 6),
            "f1": round(row["f1"], 6),
            "threshold": cut if cut == "" else round(float(cut), 6),
        }
        for row, cut in zip(per_label_report(targets, predictions, labels), cuts, strict=True)
    ]


def write_per_label_table(folder: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_LABEL_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(folder / PER_LABEL_FILE, buffer.getvalue())


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """`(num_labels, num_labels)` counts: row = true label, column = predicted label, of
    single-label (one-hot) targets and predictions."""
    num_labels = targets.shape[1]
    cells = np.argmax(targets, axis=1) * num_labels + np.argmax(predictions, axis=1)
    return np.bincount(cells, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def write_confusion_matrix(path: Path, labels: list[str], counts: np.ndarray) -> None:
    """CSV: a header `true \\ predicted, <labels...>`, then one row per true label."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *labels])
    for label, row in zip(labels, counts.tolist(), strict=True):
        writer.writerow([label, *row])
    write_atomic(path, buffer.getvalue())


def confusion_matrix_file(task: str, implicit: bool) -> str:
    return "confusion_matrix.csv" if implicit else f"confusion_matrix.{task}.csv"
