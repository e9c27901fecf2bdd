"""Multi-task training end to end on tiny synthetic tasks: history and best epoch, the run
folder reloads with the same predictions, the export's signatures match them, PCGrad and
each sampler family train."""

import json

import numpy as np
import pytest

from tests.tasks.task_data import multitask_config, shared_three_tasks
from xtune.config import parse_run_config
from xtune.tasks.run_folder import load_run, predict_texts
from xtune.training.trainer import train


@pytest.fixture(scope="module")
def files():
    return shared_three_tasks()


def run_config(folder, tasks, tmp, **training):
    raw = multitask_config(folder, tasks, **training)
    raw["data"]["padding"] = "fixed"  # one shape a task: few traces
    raw["training"]["output_dir"] = str(tmp / "runs")
    return parse_run_config(raw)


@pytest.fixture(scope="module")
def annealed_run(files, tmp_path_factory):
    folder, tasks = files
    tmp = tmp_path_factory.mktemp("annealed")
    config = run_config(folder, tasks, tmp, sampler={"name": "annealed"}, steps_per_epoch=6)
    return config, train(config, run_dir=tmp / "run")


def test_history_has_every_task_and_the_best_mean(annealed_run):
    config, result = annealed_run
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        expected = np.mean(
            [
                record["val_sentiment.subset_accuracy"],
                record["val_paraphrase.subset_accuracy"],
                record["val_sts.pearson"],
            ]
        )
        assert record["val_mean_score"] == pytest.approx(expected, abs=1e-12)
        assert sum(record[f"steps_{name}"] for name in config.tasks) == 6  # 2 + 2 + 2
    best = max(range(2), key=lambda i: history[i]["val_mean_score"])
    assert result.best_epoch == best + 1
    assert result.best["sts.pearson"] == history[best]["val_sts.pearson"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["best"]["mean_score"] == pytest.approx(history[best]["val_mean_score"])


def test_run_folder_reloads_and_predicts_the_same(annealed_run, files):
    config, result = annealed_run
    run = load_run(result.run_dir)
    import pandas as pd

    for task in run.tasks:
        dev = pd.read_csv(config.tasks[task.name].data.dev)
        pairs = list(dev["text_pair"]) if "text_pair" in dev else None
        outputs = predict_texts(run, task.name, list(dev["text"]), pairs)
        targets = (
            np.array([[label == name for name in task.labels] for label in dev["labels"]], float)
            if task.labels
            else dev["labels"].to_numpy(float).reshape(-1, 1)
        )
        again = task.evaluate(targets, outputs)
        assert again[task.metric] == pytest.approx(
            result.best[f"{task.name}.{task.metric}"], abs=1e-6
        )
