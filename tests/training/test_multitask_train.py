"""Multi-task training end to end on tiny synthetic tasks: history and best epoch, the run
folder reloads with the same predictions, the export's signatures match them, PCGrad and
each sampler family train."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.tasks.task_data import multitask_config, three_tasks
from xtune.config import parse_run_config
from xtune.tasks.run_folder import load_multitask_run, predict_texts
from xtune.training.trainer import train


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("task_files")
    return folder, three_tasks(folder)


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
    run = load_multitask_run(result.run_dir)
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


def test_export_signatures_match_the_framework(annealed_run, tmp_path):
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    from xtune.export.multitask import export_multitask_run, normalized

    _, result = annealed_run
    run = load_multitask_run(result.run_dir)
    loaded = tf.saved_model.load(str(export_multitask_run(result.run_dir, tmp_path / "export")))
    assert set(loaded.signatures) == {"sentiment", "paraphrase", "sts", "sts_embed", "embed"}
    texts = ["love super the new", "not force and you", "what can club"]
    pairs = ["super love", "hello world plus", "club can what"]
    by_task = {task.name: task for task in run.tasks}
    got = loaded.signatures["sentiment"](text=tf.constant(texts))["probabilities"].numpy()
    want = by_task["sentiment"].loss.scores(predict_texts(run, "sentiment", texts))
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)
    assert got.shape == (3, 2)
    signature = loaded.signatures["paraphrase"]
    got = signature(text=tf.constant(texts), text_pair=tf.constant(pairs))["probabilities"]
    want = by_task["paraphrase"].loss.scores(predict_texts(run, "paraphrase", texts, pairs))
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-5)
    got = loaded.signatures["sts"](text=tf.constant(texts), text_pair=tf.constant(pairs))["score"]
    want = by_task["sts"].loss.scores(predict_texts(run, "sts", texts, pairs))
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-5)
    embedding = loaded.signatures["embed"](text=tf.constant(texts))["embedding"].numpy()
    text_encoder = run.text_encoders["sts"]
    encoded = text_encoder.pad(text_encoder(tf.constant(texts)))
    vectors = run.net.embed_models["sts"].predict_on_batch(
        {f"a_{key}": value for key, value in encoded.items()}
    )
    np.testing.assert_allclose(embedding, normalized(np.asarray(vectors)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


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


def test_pcgrad_step_runs_in_the_trainer(files, tmp_path):
    folder, tasks = files
    two = {name: tasks[name] for name in ("sentiment", "sts")}
    config = run_config(folder, two, tmp_path, pcgrad=True, epochs=1, steps_per_epoch=4)
    result = train(config, run_dir=tmp_path / "run")
    record = result.history[0]
    # every step trains on one batch of each task: 4 scaled batches over 2 tasks -> 2 steps
    assert record["steps_sentiment"] == record["steps_sts"] == 2
    assert np.isfinite(record["train_loss_sentiment"]) and np.isfinite(record["train_loss_sts"])
