"""A multi-task run's SavedModel: a signature per task and `embed`; its outputs equal the
reloaded run's in-framework predictions."""

import numpy as np
import pytest
import tensorflow as tf

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
    tmp = tmp_path_factory.mktemp("export_run")
    config = run_config(folder, tasks, tmp, epochs=1, steps_per_epoch=3)
    return config, train(config, run_dir=tmp / "run")


def test_export_signatures_match_the_framework(annealed_run, tmp_path):
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    from xtune.export.multitask import export_multitask_run, normalized

    _, result = annealed_run
    run = load_run(result.run_dir)
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
    vectors = run.graph.embed_models["sts"].predict_on_batch(
        {f"a_{key}": value for key, value in encoded.items()}
    )
    np.testing.assert_allclose(embedding, normalized(np.asarray(vectors)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_two_tasks_with_fgm_lora_ema_and_reinit_train_and_export(files, tmp_path):
    """Every training feature works for every task: a classification and a regression task
    with FGM, LoRA, EMA and a re-initialised top layer train together, and each exported
    signature serves what the reloaded run predicts in-framework."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    from xtune.export.multitask import export_multitask_run

    folder, tasks = files
    two = {
        "sentiment": tasks["sentiment"],
        "similarity": {"type": "regression", "data": tasks["sts"]["data"], "low": 0, "high": 5},
    }
    raw = run_config(folder, two, tmp_path, epochs=2, steps_per_epoch=3).to_dict()
    raw["adversarial"] = {"name": "fgm", "epsilon": 0.5}
    raw["finetune"] = {"lora_rank": 2, "lora_alpha": 4, "reinit_top_layers": 1}
    raw["optimizer"] = {"name": "adamw", "learning_rate": 3e-3, "use_ema": True}
    result = train(parse_run_config(raw), run_dir=tmp_path / "run")
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert {"sentiment.subset_accuracy", "similarity.pearson"} <= set(result.best)

    run = load_run(result.run_dir)
    loaded = tf.saved_model.load(str(export_multitask_run(result.run_dir, tmp_path / "export")))
    assert set(loaded.signatures) == {"sentiment", "similarity"}
    texts = ["love super the new", "not force and you", "what can club"]
    pairs = ["super love", "hello world plus", "club can what"]
    by_task = {task.name: task for task in run.tasks}
    got = loaded.signatures["sentiment"](text=tf.constant(texts))["probabilities"].numpy()
    want = by_task["sentiment"].loss.scores(predict_texts(run, "sentiment", texts))
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)
    signature = loaded.signatures["similarity"]
    got = signature(text=tf.constant(texts), text_pair=tf.constant(pairs))["score"].numpy()
    want = by_task["similarity"].loss.scores(predict_texts(run, "similarity", texts, pairs))
    np.testing.assert_allclose(got, np.asarray(want).reshape(got.shape), atol=1e-5)
