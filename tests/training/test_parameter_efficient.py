"""Issue 25: prompt tuning, prefix tuning and BitFit train only their own weights and the
head; runs with them reload (whole, or as adapter.npz on the base encoder), count what
trains, and export with the prompt / prefixes baked into the SavedModel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.tasks.task_data import multitask_config, shared_three_tasks
from tests.training.conftest import (
    NUM_LABELS,
    bce,
    changed_paths,
    snapshot,
    tiny_batch,
    tiny_encoder,
)
from xtune.config import FinetuneConfig, parse_run_config
from xtune.encoders import load_encoder
from xtune.encoders.prompt_injection import tune_encoder
from xtune.heads import get_head
from xtune.model import build_classifier, count_parameters
from xtune.tasks import build_tasks
from xtune.tasks.run_folder import load_run, predict_texts
from xtune.training.freezing import set_trainable
from xtune.training.layerwise import parameter_groups
from xtune.training.lora import ADAPTER_FILE, load_adapter
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.schedules import SCHEDULES
from xtune.training.trainer import build_model, train

HIDDEN, LAYERS = 16, 3
METHODS = {
    "prompt": FinetuneConfig(prompt_length=4),
    "prefix": FinetuneConfig(prefix_length=3),
    "bitfit": FinetuneConfig(bitfit=True),
}
TEXTS = ["学习港口天气", "一中买了二", "我文无是更机格天"]


def tuned_classifier(finetune: FinetuneConfig, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    encoder = tiny_encoder()
    tune_encoder(encoder, finetune)
    model = build_classifier(encoder, get_head({"name": "default", "dropout": 0.0}), NUM_LABELS)
    set_trainable(model, finetune)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_only_the_method_weights_and_the_head_train(method):
    model = tuned_classifier(METHODS[method])
    optimizer = OPTIMIZERS.build({"name": "adamw", "learning_rate": 1e-2})(
        model, SCHEDULES.build("constant"), 10
    )
    model.compile(optimizer=optimizer, loss=bce(), run_eagerly=True)
    before = snapshot(model)
    x, y = tiny_batch()
    for _ in range(2):
        model.train_on_batch(x, y)
    head = {v.path for v in parameter_groups(model)["head"]}
    trainable = {v.path for v in model.trainable_weights}
    sizes = {v.path: int(np.prod(v.shape)) for v in model.weights}
    encoder_names = {v.name for v in model.trainable_weights if v.path not in head}
    changed = changed_paths(before, model)
    manual_head = HIDDEN * NUM_LABELS + NUM_LABELS
    assert sum(sizes[p] for p in head) == manual_head  # the logits on the pooled output
    if method == "prompt":
        assert encoder_names == {"soft_prompt"}
        assert changed == trainable
        manual = 4 * HIDDEN
    elif method == "prefix":
        assert encoder_names == {"prefix_keys", "prefix_values"}
        assert changed == trainable
        manual = LAYERS * 2 * 3 * HIDDEN  # layers x (keys, values) x length x heads * dim
    else:
        assert encoder_names == {"bias", "beta"}
        # A key bias gets no gradient (softmax ignores a constant shift): changed <= trainable.
        assert head < changed <= trainable
        biases = [v for v in model.trainable_weights if v.path not in head]
        manual = sum(int(np.prod(v.shape)) for v in biases)
        # BERT-style: per layer 6 biases of the projections + 2 LayerNorm betas; embeddings
        # LayerNorm beta; pooler bias.
        per_layer = 4 * HIDDEN + 32 + HIDDEN + 2 * HIDDEN
        assert manual == LAYERS * per_layer + HIDDEN + HIDDEN
    assert count_parameters(model)["trainable"] == manual + manual_head


def test_a_prompt_reloads_from_the_adapter_file_onto_the_base_encoder(tmp_path):
    from xtune.training.lora import save_adapter

    finetune = FinetuneConfig(prompt_length=4, prefix_length=2)
    model = tuned_classifier(finetune)
    for variable in model.trainable_weights:
        variable.assign(variable + 0.5)
    save_adapter(model, tmp_path / ADAPTER_FILE)
    fresh = tuned_classifier(finetune)
    x, _ = tiny_batch(seed=3)
    assert not np.allclose(fresh(x), model(x))
    load_adapter(fresh, tmp_path / ADAPTER_FILE)
    np.testing.assert_array_equal(fresh(x), model(x))


# Serves each signature's raw-string feed in a fresh interpreter: TensorFlow and
# tensorflow-text only (no xtune or keras-hub imported).
SERVE_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401

job = json.loads(open(sys.argv[1], encoding="utf-8").read())
model = tf.saved_model.load(job["dir"])
results = {}
for signature, feed in job["feeds"].items():
    served = model.signatures[signature](**{k: tf.constant(v) for k, v in feed.items()})
    key = "probabilities" if "probabilities" in served else "score"
    results[signature] = served[key].numpy()
results["modules"] = np.array(sorted(m for m in sys.modules if "." not in m))
np.savez(sys.argv[2], **results)
"""


def serve_in_fresh_process(export_dir: Path, feeds: dict[str, dict], folder: Path) -> dict:
    job = {"dir": str(export_dir), "feeds": feeds}
    (folder / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    (folder / "serve.py").write_text(SERVE_SCRIPT, encoding="utf-8")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    subprocess.run(
        [sys.executable, "serve.py", "job.json", "out.npz"],
        cwd=folder,
        env=environment,
        check=True,
        capture_output=True,
    )
    with np.load(folder / "out.npz") as out:
        return {key: out[key] for key in out.files}


def export_matches(result, task_texts: dict[str, tuple[str, list, list | None]], tmp_path):
    """The export of a run serves, for each signature, what the reloaded run predicts, in
    a process that imports neither xtune nor keras-hub."""
    from xtune.export.saved_model import export_run

    run = load_run(result.run_dir)
    exported = export_run(result.run_dir, tmp_path / "export")
    feeds = {}
    for signature, (_, texts, pairs) in task_texts.items():
        feeds[signature] = {"text": texts} | ({"text_pair": pairs} if pairs else {})
    served = serve_in_fresh_process(exported.path, feeds, tmp_path)
    assert not {"xtune", "keras_hub"} & set(served["modules"].tolist())
    for signature, (task_name, texts, pairs) in task_texts.items():
        task = run.task(task_name)
        want = np.asarray(task.loss.scores(predict_texts(run, task_name, texts, pairs)))
        got = served[signature]
        np.testing.assert_allclose(got, want.reshape(got.shape), atol=1e-5)
    return run


def test_two_tasks_with_prompt_and_prefix_fgm_layerwise_rates_and_mixed_precision(tmp_path):
    """One run exercises both injections with every training feature on two tasks (a
    classification and a cross-encoded pair task): it counts what trains, reloads whole and
    as adapter.npz on the base encoder, and exports what the reloaded run predicts."""
    folder, tasks = shared_three_tasks()
    two = {"sentiment": {**tasks["sentiment"], "loss": "bce"}, "paraphrase": tasks["paraphrase"]}
    raw = multitask_config(folder, two, epochs=1, steps_per_epoch=2)
    raw["data"]["padding"] = "fixed"
    raw["training"].update(output_dir=str(tmp_path / "runs"), mixed_precision="mixed_bfloat16")
    raw["finetune"] = {"prompt_length": 5, "prefix_length": 3}
    raw["adversarial"] = {"name": "fgm", "epsilon": 0.5}
    raw["optimizer"] = {
        "name": "adamw",
        "learning_rate": 3e-3,
        "layerwise_lr_decay": 0.8,
        "head_learning_rate": 1e-2,
    }
    config = parse_run_config(raw)
    result = train(config, run_dir=tmp_path / "run")
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert (result.run_dir / ADAPTER_FILE).is_file()

    run = load_run(result.run_dir)
    encoder = run.encoder
    hidden, layers = int(encoder.word_embeddings.shape[1]), encoder.num_layers
    head = sum(int(np.prod(v.shape)) for v in parameter_groups(run.graph.model)["head"])
    assert result.parameters["trainable"] == 5 * hidden + layers * 2 * 3 * hidden + head

    pairs = ["一中买了", "学习", "港口天气"]
    export_matches(
        result,
        {"sentiment": ("sentiment", TEXTS, None), "paraphrase": ("paraphrase", TEXTS, pairs)},
        tmp_path,
    )

    # The adapter file alone, on the same base encoder, gives the reloaded model.
    keras.utils.set_random_seed(config.training.seed)
    base_encoder = load_encoder(config.encoder)
    fresh = build_tasks(config.named_tasks())
    for task in fresh:
        task.labels = run.task(task.name).labels
    graph = build_model(config, base_encoder, fresh)
    load_adapter(graph.model, result.run_dir / ADAPTER_FILE)
    adapted = type(run)(**{**run.__dict__, "graph": graph})
    np.testing.assert_allclose(
        predict_texts(adapted, "paraphrase", TEXTS, pairs),
        predict_texts(run, "paraphrase", TEXTS, pairs),
        atol=1e-6,
    )
