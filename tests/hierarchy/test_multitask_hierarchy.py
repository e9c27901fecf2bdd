"""A hierarchy is a property of one classification task: a two-task run (flat `sentiment`,
hierarchical `category`) trains, reports the hierarchical metrics under the hierarchical
task's name only, and its export and predict return the in-framework paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.hierarchy.tree_data import PATHS, write_tree_files
from tests.tasks.task_data import multitask_config, sentiment_rows, write_task_files

HIERARCHICAL = ("hierarchical_f1", "consistency", "level_1_accuracy", "level_2_macro_f1")


@pytest.fixture(scope="module")
def run_and_export(tmp_path_factory) -> tuple[Path, Path, Path, dict]:
    """One tiny training of both tasks (the hierarchical one second, so it is served by its
    own signature, not the default alias) and its export."""
    from xtune.config import parse_run_config
    from xtune.export.saved_model import export_run
    from xtune.training.trainer import train

    folder = tmp_path_factory.mktemp("multitask_hierarchy")
    tasks = {
        "sentiment": {
            "type": "classification",
            "data": write_task_files(folder, "sentiment", sentiment_rows, train=48, dev=16),
            "loss": "softmax_ce",
        },
        "category": {
            "type": "classification",
            "data": write_tree_files(folder),
            "loss": "bce",
            "hierarchy": {"mode": "per_level"},  # best path: one full path a row
        },
    }
    raw = multitask_config(folder, tasks, epochs=1, jit_compile=False, run_name="run")
    raw["data"]["padding"] = "fixed"
    result = train(parse_run_config(raw))
    export = export_run(result.run_dir, folder / "export")
    return folder, result.run_dir, export.path, result.best


def test_hierarchical_metrics_are_the_hierarchical_tasks_own(run_and_export):
    *_, best = run_and_export
    for key in HIERARCHICAL + ("level_3_accuracy", "subset_accuracy"):
        assert 0.0 <= best[f"category.{key}"] <= 1.0
    assert "sentiment.subset_accuracy" in best
    assert not [key for key in best if key.startswith("sentiment.") and "level_" in key]
    assert not any(f"sentiment.{key}" in best for key in HIERARCHICAL)


def test_export_and_predict_return_the_in_framework_paths(run_and_export, tmp_path):
    """`export_run`'s own check already compared `paths` and `level_labels` of every
    signature with the in-framework model's; here predict on the run folder and on the export
    write the paths the loaded run's `serving_outputs` give."""
    from xtune.export.predict import predict_file
    from xtune.tasks.run_folder import load_run, predict_texts

    folder, run_dir, export_dir, _ = run_and_export
    dev = folder / "dev.csv"
    texts = pd.read_csv(dev)["text"].tolist()
    run = load_run(run_dir)
    task = next(task for task in run.tasks if task.name == "category")
    served = task.serving_outputs(tf.constant(predict_texts(run, "category", texts)))
    expected = ["|".join(p.decode() for p in row if p) for row in served["paths"].numpy()]
    assert all(path in PATHS for path in expected)  # one leaf-ending path a row
    tables = {}
    for source, model_dir in (("run", run_dir), ("export", export_dir)):
        output = tmp_path / f"{source}.csv"
        predict_file(model_dir, dev, output, verbose=0, task="category")
        tables[source] = pd.read_csv(output, keep_default_na=False)
        assert tables[source]["predicted_paths"].tolist() == expected
        levels = served["level_labels"].numpy()
        for level in range(3):
            written = tables[source][f"level_{level + 1}"].tolist()
            assert written == [name.decode() for name in levels[:, level]]
    np.testing.assert_allclose(
        tables["run"].filter(like="prob_").to_numpy(float),
        tables["export"].filter(like="prob_").to_numpy(float),
        atol=1e-5,
    )
    output = tmp_path / "sentiment.csv"
    predict_file(export_dir, dev, output, verbose=0, task="sentiment")
    assert "predicted_paths" not in pd.read_csv(output).columns  # a flat task: no paths
