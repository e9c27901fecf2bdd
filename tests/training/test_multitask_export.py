"""A multi-task run's export (`xtune.export.saved_model.export_run`, one export for any run):
a signature per task named after it, `<task>_tokenize` and `<task>_token_ids`, `<bi-encoder
task>_embed` and `embed`; `serving_default`, `tokenize` and `serving_token_ids` answer for the
first task. Its outputs equal the reloaded run's in-framework predictions, with each
classification task's tuned thresholds."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.tasks.task_data import multitask_config, shared_three_tasks
from xtune.config import parse_run_config
from xtune.tasks.run_folder import load_run, predict_texts
from xtune.training.trainer import train

TEXTS = ["love super the new", "not force and you", "what can club"]
PAIRS = ["super love", "hello world plus", "club can what"]


@pytest.fixture(scope="module")
def files():
    return shared_three_tasks()


def run_config(folder, tasks, tmp, **training):
    raw = multitask_config(folder, tasks, **training)
    raw["data"]["padding"] = "fixed"  # one shape a task: few traces
    raw["training"]["output_dir"] = str(tmp / "runs")
    return parse_run_config(raw)


def normalized(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def test_export_signatures_match_the_framework(three_task_run, three_task_export):
    """The session's three-task run (tests/conftest.py) and its export."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    from xtune.export.saved_model import EXPORT_FILE

    run = load_run(three_task_run)
    metadata = json.loads((three_task_export / EXPORT_FILE).read_text(encoding="utf-8"))
    loaded = tf.saved_model.load(str(three_task_export))
    per_task = {
        f"{name}{suffix}"
        for name in ("sentiment", "paraphrase", "sts")
        for suffix in ("", "_tokenize", "_token_ids")
    }
    shared = {"serving_default", "tokenize", "serving_token_ids", "embed", "sts_embed"}
    assert set(loaded.signatures) == per_task | shared
    assert set(metadata["signatures"]) == per_task | shared
    assert metadata["default_task"] == "sentiment"
    assert metadata["labels"] == metadata["tasks"]["sentiment"]["labels"]
    assert metadata["check"]["max_abs_difference"] <= 1e-5
    by_task = {task.name: task for task in run.tasks}
    for name in ("sentiment", "serving_default"):  # serving_default is the first task's
        got = loaded.signatures[name](text=tf.constant(TEXTS))["probabilities"].numpy()
        want = by_task["sentiment"].loss.scores(predict_texts(run, "sentiment", TEXTS))
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)
        assert got.shape == (3, 2)
    signature = loaded.signatures["paraphrase"]
    got = signature(text=tf.constant(TEXTS), text_pair=tf.constant(PAIRS))["probabilities"]
    want = by_task["paraphrase"].loss.scores(predict_texts(run, "paraphrase", TEXTS, PAIRS))
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-5)
    got = loaded.signatures["sts"](text=tf.constant(TEXTS), text_pair=tf.constant(PAIRS))["score"]
    want = by_task["sts"].loss.scores(predict_texts(run, "sts", TEXTS, PAIRS))
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-5)
    # The bi-encoder's token-id signature takes each side's ids, as its model does.
    ids = loaded.signatures["sts_tokenize"](text=tf.constant(TEXTS), text_pair=tf.constant(PAIRS))
    assert sorted(ids) == sorted(metadata["tasks"]["sts"]["token_id_inputs"])
    got = loaded.signatures["sts_token_ids"](**ids)["score"]
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-5)
    text_encoder = run.text_encoders["sts"]
    encoded = text_encoder.pad(text_encoder(tf.constant(TEXTS)))
    vectors = run.graph.embed_models["sts"].predict_on_batch(
        {f"a_{key}": value for key, value in encoded.items()}
    )
    for name in ("embed", "sts_embed"):
        embedding = loaded.signatures[name](text=tf.constant(TEXTS))["embedding"].numpy()
        np.testing.assert_allclose(embedding, normalized(np.asarray(vectors)), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_two_tasks_with_fgm_lora_ema_and_reinit_train_and_export(files, tmp_path):
    """Every training feature works for every task: a classification and a regression task
    with FGM, LoRA, EMA and a re-initialised top layer train together, and each exported
    signature serves what the reloaded run predicts in-framework, the classification task
    with its tuned thresholds."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops for loading)

    from xtune.export.saved_model import export_run

    folder, tasks = files
    two = {
        "sentiment": {**tasks["sentiment"], "loss": "bce"},  # thresholds to tune
        "similarity": {"type": "regression", "data": tasks["sts"]["data"], "low": 0, "high": 5},
    }
    raw = run_config(folder, two, tmp_path, epochs=2, steps_per_epoch=3).to_dict()
    raw["adversarial"] = {"name": "fgm", "epsilon": 0.5}
    raw["finetune"] = {"lora_rank": 2, "lora_alpha": 4, "reinit_top_layers": 1}
    raw["optimizer"] = {"name": "adamw", "learning_rate": 3e-3, "use_ema": True}
    raw["training"]["decision_rule"] = "tuned"
    result = train(parse_run_config(raw), run_dir=tmp_path / "run")
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert {"sentiment.subset_accuracy", "similarity.pearson"} <= set(result.best)

    run = load_run(result.run_dir)
    stored = json.loads((result.run_dir / "thresholds.json").read_text())["thresholds"]
    assert set(stored) == {"sentiment"}
    tuned = {"sentiment": list(stored["sentiment"].values())}  # by label name
    exported = export_run(result.run_dir, tmp_path / "export")
    loaded = tf.saved_model.load(str(exported.path))
    assert exported.metadata["tasks"]["sentiment"]["thresholds"] == pytest.approx(
        tuned["sentiment"]
    )
    assert exported.metadata["tasks"]["similarity"]["thresholds"] is None
    by_task = {task.name: task for task in run.tasks}
    served = loaded.signatures["sentiment"](text=tf.constant(TEXTS))
    want = np.asarray(by_task["sentiment"].loss.scores(predict_texts(run, "sentiment", TEXTS)))
    np.testing.assert_allclose(served["probabilities"].numpy(), want, atol=1e-5)
    np.testing.assert_array_equal(
        served["predictions"].numpy(), (want > np.asarray(tuned["sentiment"])).astype(np.int32)
    )
    signature = loaded.signatures["similarity"]
    got = signature(text=tf.constant(TEXTS), text_pair=tf.constant(PAIRS))["score"].numpy()
    want = by_task["similarity"].loss.scores(predict_texts(run, "similarity", TEXTS, PAIRS))
    np.testing.assert_allclose(got, np.asarray(want).reshape(got.shape), atol=1e-5)

    # Whatever thresholds.json holds is what the export serves: here label 0 always, 1 never
    # (a token-id export: the same thresholds code, without the tokenizer graphs' cost).
    from xtune.export.saved_model import export_token_id_model

    copy = shutil.copytree(result.run_dir, tmp_path / "extreme")
    (copy / "thresholds.json").write_text(json.dumps({"thresholds": {"sentiment": [0, 1]}}))
    extreme = tf.saved_model.load(str(export_token_id_model(copy, tmp_path / "extreme-ids").path))
    ids = loaded.signatures["sentiment_tokenize"](text=tf.constant(TEXTS))
    predictions = extreme.signatures["sentiment_token_ids"](**ids)["predictions"]
    np.testing.assert_array_equal(predictions.numpy(), [[1, 0]] * len(TEXTS))
