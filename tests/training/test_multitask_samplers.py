"""Each sampler family and PCGrad train a two-task run in the trainer."""

import numpy as np
import pytest

from tests.tasks.task_data import multitask_config, shared_three_tasks
from xtune.config import parse_run_config
from xtune.tasks.run_folder import load_multitask_run
from xtune.training.multitask import DevEvaluation, Prepared
from xtune.training.trainer import train


@pytest.fixture(scope="module")
def files():
    return shared_three_tasks()


def run_config(folder, tasks, tmp, **training):
    raw = multitask_config(folder, tasks, **training)
    raw["data"]["padding"] = "fixed"  # one shape a task: few traces
    raw["training"]["output_dir"] = str(tmp / "runs")
    return parse_run_config(raw)


@pytest.mark.parametrize(
    "sampler",
    [
        {"name": "sequential", "order": [1, 0]},
        {"name": "round_robin"},
        {"name": "temperature"},
        {"name": "uniform_to_proportional"},
    ],  # fmt: skip
)
def test_each_sampler_family_trains(files, tmp_path, sampler):
    folder, tasks = files
    two = {name: tasks[name] for name in ("sentiment", "paraphrase")}
    config = run_config(folder, two, tmp_path, sampler=sampler, epochs=1, steps_per_epoch=4)
    result = train(config, run_dir=tmp_path / "run")
    record = result.history[0]
    steps = [record["steps_sentiment"], record["steps_paraphrase"]]
    assert sum(steps) == 4 and np.isfinite(record["train_loss"])
    if sampler["name"] in ("sequential", "round_robin"):
        assert steps == [2, 2]  # every task's (scaled) batches exactly once


def test_pcgrad_step_runs_in_the_trainer_after_a_head_only_stage(files, tmp_path):
    folder, tasks = files
    two = {name: tasks[name] for name in ("sentiment", "sts")}
    config = run_config(
        folder, two, tmp_path, pcgrad=True, epochs=2, steps_per_epoch=4,
        mixed_precision="mixed_bfloat16",
    )  # fmt: skip
    config = parse_run_config({**config.to_dict(), "finetune": {"frozen_epochs": 1}})
    result = train(config, run_dir=tmp_path / "run")
    for record in result.history:
        # every step trains on one batch of each task: 4 scaled batches over 2 tasks -> 2 steps
        assert record["steps_sentiment"] == record["steps_sts"] == 2
        assert np.isfinite(record["train_loss_sentiment"]) and np.isfinite(record["train_loss_sts"])
    assert len(result.history) == 2
    assert result.parameters["trainable"] > 0
    # trained in bfloat16, scored as served: the float32 model reloaded from the run folder
    run = load_multitask_run(result.run_dir)
    data = {task.name: task.load(run.encoder) for task in run.tasks}
    evaluation = DevEvaluation(Prepared(run.tasks, data, run.net, run.encoder), config)
    metrics = evaluation.evaluate()
    assert result.best["sts.pearson"] == pytest.approx(metrics["sts"]["pearson"], abs=1e-9)
    assert result.best["sentiment.subset_accuracy"] == metrics["sentiment"]["subset_accuracy"]
