"""The decision rule a run serves is what its export and predictor apply: predicting the dev
file with the export gives the dev value metrics.json reports for the served rule."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SAMPLE, sample_run_config
from xtune.config import parse_run_config
from xtune.export.predict import predict_file
from xtune.export.saved_model import export_run
from xtune.thresholds import prediction_metric
from xtune.training.trainer import train

METRIC = "micro_f1"


def label_matrix(cells: pd.Series, labels: list[str]) -> np.ndarray:
    rows = [
        set(str(cell).split("|")) if isinstance(cell, str) and cell else set() for cell in cells
    ]
    return np.array([[label in row for label in labels] for row in rows], dtype=np.int64)


def dev_metric_of(predictions_file, labels: list[str]) -> float:
    gold = pd.read_csv(SAMPLE / "dev.csv")["labels"]
    predicted = pd.read_csv(predictions_file, keep_default_na=False)["predicted_labels"]
    return prediction_metric(METRIC, label_matrix(gold, labels), label_matrix(predicted, labels))


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rule")
    raw = sample_run_config(
        tmp,
        training={"epochs": 1, "steps_per_epoch": 4, "metric": METRIC, "decision_rule": "tuned"},
    )
    raw["data"]["max_length"] = 32
    return train(parse_run_config(raw), run_dir=tmp / "run")


def test_the_export_serves_the_rule_the_run_reports(tuned_run, tmp_path, capsys):
    metrics = json.loads((tuned_run.run_dir / "metrics.json").read_text())
    record = metrics["decision_rule"]
    assert record["served"] == "tuned" and record["metric"] == METRIC
    assert record["dev"]["tuned"] == pytest.approx(metrics["tuned"][METRIC])
    assert record["dev"]["default"] == pytest.approx(metrics["best"][METRIC])
    assert record["dev"]["tuned_cross_validated"] is not None and record["folds"] == 5

    stored = json.loads((tuned_run.run_dir / "thresholds.json").read_text())
    labels = json.loads((tuned_run.run_dir / "labels.json").read_text())["labels"]
    assert list(stored["thresholds"]["default"]) == labels  # by label name
    exported = export_run(tuned_run.run_dir, tmp_path / "export")
    assert exported.metadata["served_rule"] == "tuned"
    assert exported.metadata["rule_choice"]["dev"] == record["dev"]
    assert "serves the tuned rule" in capsys.readouterr().out
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    assert "## Decision rule served" in card and "tuned rule" in card

    out = tmp_path / "dev_predictions.csv"
    predict_file(tmp_path / "export", SAMPLE / "dev.csv", out, verbose=0)
    assert dev_metric_of(out, labels) == pytest.approx(record["dev"]["tuned"], abs=1e-9)


def test_a_run_serving_the_default_rule_predicts_its_default_dev_value(tuned_run, tmp_path):
    """The same run folder with the default rule served (thresholds.json's `thresholds`
    null): the predictor applies no thresholds and reproduces the default rule's value."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(tuned_run.run_dir, folder)
    stored = json.loads((folder / "thresholds.json").read_text())
    stored["thresholds"]["default"] = None
    (folder / "thresholds.json").write_text(json.dumps(stored))
    metrics = json.loads((folder / "metrics.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())["labels"]
    out = tmp_path / "dev_predictions.csv"
    predict_file(folder, SAMPLE / "dev.csv", out, verbose=0)
    assert dev_metric_of(out, labels) == pytest.approx(metrics["best"][METRIC], abs=1e-9)


def test_the_run_folder_holds_the_per_label_table(tuned_run):
    table = pd.read_csv(tuned_run.run_dir / "per_label.csv")
    labels = json.loads((tuned_run.run_dir / "labels.json").read_text())["labels"]
    dev = table[table["split"] == "dev"]
    assert dev["label"].tolist() == labels
    stored = json.loads((tuned_run.run_dir / "thresholds.json").read_text())["thresholds"]
    assert dev["threshold"].tolist() == pytest.approx(list(stored["default"].values()), abs=1e-6)
    assert set(table.columns) >= {"precision", "recall", "f1", "support", "threshold"}
