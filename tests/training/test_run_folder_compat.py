"""A run folder written before runs were lists of tasks (no tasks.json; committed fixture from
xtune a2588f3, its config's paths moved away) loads as one `default` task and predicts what
that code predicted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from tests.task_view import load_task_view as load_trained_run
from xtune.tasks.run_folder import load_run

FIXTURE = Path(__file__).parent.parent / "fixtures" / "run_folder_v1"


def test_a_folder_from_before_tasks_loads_and_predicts_as_it_did(tmp_path):
    folder = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    expected = json.loads((folder / "expected_predictions.json").read_text(encoding="utf-8"))

    loaded = load_run(folder)
    assert [task.name for task in loaded.tasks] == ["default"]
    assert loaded.thresholds["default"] is not None  # thresholds.json's bare list
    run = load_trained_run(folder)
    encoded = run.text_encoder(tf.constant(expected["texts"]), tf.constant(expected["pairs"]))
    logits = run.model.predict_on_batch(run.text_encoder.pad(encoded))
    probabilities = np.asarray(run.loss.scores(logits), np.float32)
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=1e-6)
    assert len(run.labels) == probabilities.shape[1]
