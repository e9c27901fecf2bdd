"""The `mlm` task: its config rules, masked-LM steps that lower the held-out loss, the head
initialised from a Hugging Face checkpoint's (trimmed or not) and named back, and MLM as an
auxiliary task beside classification in a two-task run."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from tests.conftest import tiny_encoder_spec
from tests.encoders.family_helpers import FIXTURES
from tests.tasks.task_data import multitask_config, sentiment_rows, write_task_files
from xtune.config import ConfigError, parse_run_config
from xtune.encoders import FAMILIES, load_encoder
from xtune.encoders.masked_lm import (
    HEAD_NAMES,
    hf_head_weights,
    initialize_from_checkpoint,
    masked_lm_head,
)
from xtune.encoders.trimmed_vocabulary import trim_encoder
from xtune.export.predict import open_predictor
from xtune.export.saved_model import export_run
from xtune.model import build_task_graph, encoder_features_model
from xtune.tasks import build_tasks
from xtune.tasks.mlm import masked_lm_metrics, masked_token_crossentropy
from xtune.training.pretrain import masked_lm_task
from xtune.training.trainer import train

WORDS = ["学习", "港口", "天气", "北京", "今年", "价格", "我"]


def write_corpus(path, rows: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(WORDS, size=8)) for _ in range(rows)]
    pd.DataFrame({"text": texts, "other": ["" for _ in texts]}).to_csv(path, index=False)
    return path


def mlm_config(tmp_path, **task) -> dict:
    corpus = write_corpus(tmp_path / "corpus.csv")
    return {
        "data": {"max_length": 24, "cache_dir": None},
        "encoder": tiny_encoder_spec(hidden_dim=16, intermediate_dim=32),
        "optimizer": {"name": "adamw", "learning_rate": 3e-3},
        "training": {
            "epochs": 2,
            "batch_size": 8,
            "mixed_precision": "float32",
            "verbose": 0,
            "checkpoints": False,
            "output_dir": str(tmp_path / "runs"),
        },  # fmt: skip
        "tasks": {"lm": {"type": "mlm", "data": {"train": str(corpus)}, **task}},
    }


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"loss": "bce"}, r"tasks\.lm\.loss: the mlm task trains with the masked pieces'"),
        ({"head": {"name": "pooling"}}, r"tasks\.lm\.head: the mlm task predicts pieces"),
        ({"metric": "micro_f1"}, r"tasks\.lm\.metric: the mlm task reports mlm_accuracy"),
        ({"mlm": {"mask_rate": 0.0}}, r"tasks\.lm\.mlm\.mask_rate"),
        ({"mlm": {"colums": ["a"]}}, r"unknown key 'tasks\.lm\.mlm\.colums'.*did you mean"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path, task, message):
    with pytest.raises(ConfigError, match=message):
        parse_run_config(mlm_config(tmp_path, **task))


def test_mlm_settings_only_on_mlm_tasks(tmp_path):
    raw = mlm_config(tmp_path)
    raw["tasks"]["lm"]["type"] = "classification"
    raw["tasks"]["lm"]["mlm"] = {"mask_rate": 0.2}
    with pytest.raises(ConfigError, match=r"tasks\.lm\.mlm: only mlm tasks read it"):
        parse_run_config(raw)


def test_pretrain_needs_one_mlm_task(tmp_path):
    raw = mlm_config(tmp_path)
    raw["tasks"]["second"] = {"type": "classification", "data": {"train": "x.csv"}}
    with pytest.raises(ConfigError, match=r"one task of type mlm \(found: lm \(mlm\), second"):
        masked_lm_task(parse_run_config(raw), "run.yaml")
    assert masked_lm_task(parse_run_config(mlm_config(tmp_path))) == "lm"


def test_default_mlm_settings_stay_out_of_the_config_dict(tmp_path):
    config = parse_run_config(mlm_config(tmp_path, mlm={"mask_rate": 0.2}))
    assert config.to_dict()["tasks"]["lm"]["mlm"]["mask_rate"] == 0.2
    assert "mlm" not in parse_run_config(mlm_config(tmp_path)).to_dict()["tasks"]["lm"]


# ---------------------------------------------------------------- loss and metrics


def test_uniform_logits_cost_log_vocabulary():
    targets = tf.constant([[1, 3, -1], [0, -1, -1]])
    loss = masked_token_crossentropy(targets, tf.zeros([2, 3, 4]))
    assert float(loss) == pytest.approx(np.log(4), rel=1e-6)  # the -1 padding is not counted
    metrics = masked_lm_metrics(np.array([[2 * np.log(4), 1, 2], [np.log(4), 0, 1]]))
    assert metrics["mlm_accuracy"] == pytest.approx(1 / 3)
    assert metrics["perplexity"] == pytest.approx(4.0)


def test_masked_lm_steps_lower_the_held_out_loss(tmp_path):
    keras.utils.set_random_seed(0)
    config = parse_run_config(mlm_config(tmp_path))
    (task,) = build_tasks(config.named_tasks())
    encoder = load_encoder(config.encoder)
    data = task.load(encoder)
    graph = build_task_graph(encoder, [task])
    model = graph.task_models["lm"]
    dev = data.splits["dev"]
    before = task.evaluate(dev.targets, task.predict(model, dev, 16))
    optimizer = keras.optimizers.Adam(3e-3)
    variables = [v for v in model.trainable_variables if "pooled_dense" not in v.path]
    optimizer.build(variables)

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            loss = task.compute_loss(targets, model(inputs, training=True))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    batches = task.dataset(data.splits["train"], 8, True, 0).repeat().take(40)
    losses = [float(step(inputs, targets)) for inputs, targets in batches]
    after = task.evaluate(dev.targets, task.predict(model, dev, 16))
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.0
    assert after["mlm_loss"] < before["mlm_loss"] - 1.0
    assert after["perplexity"] < before["perplexity"] / 10


# ---------------------------------------------------------------- the head


def folder_with_head(family: str, tmp_path) -> tuple:
    """The tiny Hugging Face fixture of `family` with a masked-LM head added to its weights."""
    folder = tmp_path / family
    shutil.copytree(FIXTURES / family, folder)
    (folder / "pytorch_model.bin").unlink()
    weights = load_file(str(folder / "model.safetensors"))
    hidden = weights["embeddings.word_embeddings.weight"].shape
    names, rng = HEAD_NAMES[family], np.random.default_rng(1)
    head = {
        f"{names.dense}.weight": rng.normal(size=(hidden[1], hidden[1])),
        f"{names.dense}.bias": rng.normal(size=hidden[1]),
        f"{names.norm}.weight": rng.normal(size=hidden[1]),
        f"{names.norm}.bias": rng.normal(size=hidden[1]),
        names.bias: rng.normal(size=hidden[0]),
    }
    head = {name: value.astype(np.float32) for name, value in head.items()}
    prefix = "bert." if family == "bert" else "roberta."
    stored = {prefix + name: value for name, value in weights.items()}
    save_file({**stored, **head}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder, head


def built_head(encoder):
    head = masked_lm_head(encoder, "lm__masked_lm")
    features = encoder_features_model(encoder)(
        {name: keras.Input((None,), dtype="int32") for name in encoder.input_names}
    )
    head(features["sequence_output"], mask_positions=keras.Input((None,), dtype="int32"))
    return head


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_head_starts_from_the_checkpoints_and_is_named_back(family, tmp_path):
    folder, stored = folder_with_head(family, tmp_path)
    encoder = load_encoder({"name": "hf", "path": str(folder)})
    head = built_head(encoder)
    assert "checkpoint's masked-LM head" in initialize_from_checkpoint(encoder, head)
    written = hf_head_weights(encoder, head)
    assert written.keys() == stored.keys()
    for name, value in stored.items():
        np.testing.assert_allclose(written[name], value, rtol=1e-6, err_msg=name)

    kept = np.arange(0, encoder.tokenizer.vocabulary_size, 3)
    trimmed = trim_encoder(encoder, kept)
    head = built_head(trimmed)
    initialize_from_checkpoint(trimmed, head)
    rows = trimmed.tokenizer.kept_ids
    names = HEAD_NAMES[family]
    assert keras.ops.convert_to_numpy(head.weights[0]).shape == (len(rows),)
    full = hf_head_weights(trimmed, head, full_bias=stored[names.bias])
    np.testing.assert_allclose(full[names.bias], stored[names.bias], rtol=1e-6)


@pytest.mark.parametrize("family", sorted(HEAD_NAMES))
def test_every_family_gives_pieces_a_mask_token_and_a_head(family):
    encoder = FAMILIES.get(family).tiny_random(320)
    tokenizer = encoder.tokenizer
    pieces = tokenizer.word_pieces()
    assert len(pieces.texts) == len(pieces.starts_word) == tokenizer.vocabulary_size
    assert tokenizer.mask_id is not None and pieces.starts_word.dtype == bool
    head = built_head(encoder)
    inputs = {name: np.zeros((2, 5), np.int32) for name in encoder.input_names}
    inputs.update(token_ids=np.full((2, 5), 7, np.int32), padding_mask=np.ones((2, 5), np.int32))
    features = encoder_features_model(encoder)(inputs)
    logits = head(features["sequence_output"], mask_positions=np.array([[1, 2], [3, 0]]))
    assert logits.shape == (2, 2, tokenizer.vocabulary_size) and logits.dtype == "float32"


def test_a_checkpoint_without_head_gets_a_new_one():
    encoder = load_encoder({"name": "hf", "path": str(FIXTURES / "bert")})
    head = built_head(encoder)
    assert "new masked-LM head" in initialize_from_checkpoint(encoder, head)
    assert head.token_embedding is encoder.backbone.token_embedding  # tied


# ---------------------------------------------------------------- auxiliary task


def test_mlm_as_an_auxiliary_task_beside_classification(tmp_path):
    sentiment = write_task_files(tmp_path, "sentiment", sentiment_rows, train=64, dev=32)
    tasks = {
        "sentiment": {"type": "classification", "data": sentiment, "loss": "softmax_ce"},
        "lm": {"type": "mlm", "data": sentiment, "weight": 0.5},
    }
    raw = multitask_config(tmp_path, tasks, epochs=2)
    raw["data"]["trim_vocabulary"] = True  # the mask token is kept
    result = train(parse_run_config(raw), run_dir=tmp_path / "run")
    assert {"sentiment.subset_accuracy", "lm.mlm_accuracy", "lm.perplexity"} <= set(result.best)
    for epoch in result.history:
        assert epoch["steps_lm"] > 0 and epoch["steps_sentiment"] > 0
        assert np.isfinite(epoch["train_loss_lm"]) and np.isfinite(epoch["train_loss_sentiment"])
    records = json.loads((tmp_path / "run" / "tasks.json").read_text(encoding="utf-8"))
    assert records["lm"]["serves"] is False  # `xtune predict` and export use sentiment only
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert summary["data"]["lm"]["train"]["sequences"] > 0
    assert open_predictor(tmp_path / "run").task == "sentiment"  # no --task needed
    exported = export_run(tmp_path / "run", tmp_path / "export")
    assert list(exported.metadata["tasks"]) == ["sentiment"]
    assert not any(name.startswith("lm") for name in exported.metadata["signatures"])
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Task `lm` (mlm): trained the shared encoder; not served" in card


def test_an_auxiliary_mlm_task_does_not_choose_the_best_epoch():
    """The best-epoch score is the labelled tasks' (weighted) mean; an mlm task alone (xtune
    pretrain) is scored on its own metric."""
    from types import SimpleNamespace

    from xtune.training.callbacks import mean_score

    def task(name, serves, metric, direction="max"):
        value = SimpleNamespace(name=name, serves=serves, weight=1.0, metric=metric)
        value.selection_value = lambda metrics: metrics[metric] * (1 if direction == "max" else -1)
        return value

    appeal, lm = task("appeal", True, "top1_accuracy"), task("lm", False, "mlm_loss", "min")
    metrics = {"appeal": {"top1_accuracy": 0.8}, "lm": {"mlm_loss": 3.0}}
    assert mean_score([appeal, lm], metrics) == pytest.approx(0.8)
    assert mean_score([lm], metrics) == pytest.approx(-3.0)
