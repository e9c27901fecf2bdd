"""Each sampler family and PCGrad train a two-task run in the trainer."""

import keras
import numpy as np
import pytest

from tests.tasks.task_data import multitask_config, shared_three_tasks
from xtune.config import parse_run_config
from xtune.tasks.run_folder import load_run
from xtune.training.task_model import PCGradStep, TaskStep, step_plan
from xtune.training.trainer import build_run, train


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
    ],  # fmt: skip
)  # the annealed family trains in test_multitask_train.py; every schedule: tests/tasks/
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
    run = load_run(result.run_dir)
    metrics = {}
    for task in run.tasks:
        dev = task.load(run.encoder).splits["dev"]
        outputs = task.predict(run.graph.task_models[task.name], dev, 64)
        metrics[task.name] = task.evaluate(dev.targets, outputs)
    assert result.best["sts.pearson"] == pytest.approx(metrics["sts"]["pearson"], abs=1e-9)
    assert result.best["sentiment.subset_accuracy"] == metrics["sentiment"]["subset_accuracy"]


def first_step_changes(run, config, kind):
    """Weights before and after one training step of `kind`, with a fresh optimizer."""
    from xtune.training.optimizers import OPTIMIZERS
    from xtune.training.schedules import SCHEDULES

    model = run.graph.model
    start = [np.array(w) for w in model.get_weights()]
    schedule = SCHEDULES.build(config.schedule.to_dict())
    model.compile(optimizer=OPTIMIZERS.build(config.optimizer.to_dict())(model, schedule, 10))
    model.optimizer.build(model.trainable_variables)
    views = [run.graph.task_models[task.name] for task in run.tasks]
    model.plan = step_plan(run.tasks, views, [kind], seed=config.training.seed)
    batches = tuple(
        next(iter(task.dataset(run.data.tasks[task.name].splits["train"], 8, False, 0)))
        for task in run.tasks
    )
    model.train_step((0, batches))
    after = [np.array(w) for w in model.get_weights()]
    model.set_weights(start)
    names = [w.path for w in model.weights]
    return {name: a - b for name, a, b in zip(names, after, start, strict=True)}


def test_a_head_only_task_trains_its_head_not_the_encoder(files, tmp_path):
    """`tasks.<name>.frozen_epochs`: in those epochs the task's loss reaches only its own head;
    with PCGrad the encoder then moves exactly as by the other task alone."""
    from xtune.training.task_batches import head_only_tasks

    folder, tasks = files
    no_dropout = {"head": {"name": "pooling", "pooling": "mean", "dropout": 0.0}}
    two = {name: {**tasks[name], **no_dropout} for name in ("sentiment", "paraphrase")}
    two["sentiment"]["frozen_epochs"] = 1

    def deterministic(**training):  # no dropout: the same batch gives the same gradient
        raw = run_config(folder, two, tmp_path, epochs=2, **training).to_dict()
        raw["encoder"]["dropout"] = 0.0
        return parse_run_config(raw)

    config, with_pcgrad = deterministic(), deterministic(pcgrad=True)
    keras.utils.set_random_seed(config.training.seed)  # as `train` does: the same start alone
    run = build_run(config, None)
    assert head_only_tasks(run.tasks, 0) == (0,) and head_only_tasks(run.tasks, 1) == ()

    encoder = tuple(w.path for w in run.graph.encoder_model.weights)

    def moved(changes, prefix):
        return [name for name, d in changes.items() if name.startswith(prefix) and d.any()]

    alone = first_step_changes(run, config, TaskStep(0, head_only=True))
    assert moved(alone, "sentiment__") and not moved(alone, encoder)
    other = first_step_changes(run, config, TaskStep(1))
    assert moved(other, encoder) and not moved(other, "sentiment__")
    both = first_step_changes(run, with_pcgrad, PCGradStep(frozen=(0,)))
    assert moved(both, "sentiment__") and moved(both, "paraphrase__")
    for name in moved(other, encoder):
        # A first Adam step is lr * g / (|g| + eps), ~3e-3 (the learning rate) wherever |g| is
        # well above eps = 1e-7; where a gradient is near eps (an embedding row's sum, say),
        # PCGrad's other summation order (and its dense word-embedding gradient) moves the last
        # bits of g, which shows as up to ~1% of a step. Measured: 1.9e-5 at most.
        np.testing.assert_allclose(both[name], other[name], atol=3e-5, err_msg=name)
    nothing = first_step_changes(run, with_pcgrad, PCGradStep(frozen=(0, 1)))
    assert not moved(nothing, encoder) and moved(nothing, "paraphrase__")


def test_task_frozen_epochs_must_leave_epochs_to_train(files, tmp_path):
    from xtune.config import ConfigError

    folder, tasks = files
    one = {"sentiment": {**tasks["sentiment"], "frozen_epochs": 2}}
    with pytest.raises(ConfigError, match=r"tasks.sentiment.frozen_epochs: expected 0..1"):
        run_config(folder, one, tmp_path, epochs=2)
