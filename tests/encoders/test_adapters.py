"""Every encoder family with a tiny random factory honours the adapter contract; nothing
outside xtune/encoders/ names a BERT layer."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from xtune.config import FinetuneConfig
from xtune.data.tokenization import TextEncoder
from xtune.encoders import FAMILIES, rebuild_encoder, write_encoder_files
from xtune.heads import get_head
from xtune.model import build_classifier, encoder_features_model
from xtune.training.adversarial import FGM
from xtune.training.freezing import reinitialize_top_layers, set_trainable
from xtune.training.layerwise import parameter_groups
from xtune.training.lora import enable_lora
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.schedules import SCHEDULES
from xtune.training.task_model import TaskModel, TaskStep, step_plan

VOCABULARY_SIZE = 300  # byte-level BPE needs 262 ids at least
TEXTS = ["hello world w3 w7", "", "a b c " * 20, "Héllo, 你好！ w12"]
PAIRS = ["w1 w2", "x", "", "pair text"]
# keras-hub's BERT layer names and the BERT-only classes: only xtune/encoders/ may name them.
BERT_NAMES = (
    "transformer_layer_",
    "pooled_dense",
    "token_embedding",
    "segment_embedding",
    "embeddings_layer_norm",
    "BertBackbone",
    "WordPiece",
)


def families_with_tiny_models() -> list[str]:
    return [name for name in FAMILIES.names() if FAMILIES.get(name).has_tiny_random()]


def tiny_adapter(family: str):
    keras.utils.set_random_seed(0)
    return FAMILIES.get(family).tiny_random(VOCABULARY_SIZE)


@pytest.fixture(scope="module", params=families_with_tiny_models())
def adapter(request):
    return tiny_adapter(request.param)


def encode(adapter, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
    encoder = TextEncoder(adapter.tokenizer, adapter.packing, 24)
    encoded = encoder(tf.constant(texts), None if pairs is None else tf.constant(pairs))
    return {name: value.numpy() for name, value in encoder.pad(encoded).items()}


@pytest.fixture(scope="module")
def batches(adapter) -> dict[bool, dict[str, np.ndarray]]:
    """The adapter's padded inputs of TEXTS alone (False) and of TEXTS with PAIRS (True).

    Made once per adapter: each new `TextEncoder` traces the tokenizer again (RoBERTa's
    byte-level BPE takes seconds to trace, twice for pairs)."""
    return {False: encode(adapter, TEXTS), True: encode(adapter, TEXTS, PAIRS)}


def features_of(adapter, inputs) -> dict[str, np.ndarray]:
    outputs = encoder_features_model(adapter)(inputs)
    return keras.tree.map_structure(np.asarray, dict(outputs))


def test_inputs_and_features_have_the_contract_shapes(adapter, batches):
    inputs = batches[True]
    assert tuple(inputs) == adapter.input_names
    assert set(inputs["token_ids"].ravel()) <= set(range(adapter.tokenizer.vocabulary_size))
    features = features_of(adapter, inputs)
    rows, length = inputs["token_ids"].shape
    hidden = features["sequence_output"].shape[-1]
    assert features["sequence_output"].shape == (rows, length, hidden)
    assert len(features["hidden_states"]) == adapter.num_layers
    for states in features["hidden_states"]:
        assert states.shape == (rows, length, hidden)
    np.testing.assert_array_equal(features["hidden_states"][-1], features["sequence_output"])
    if "pooled_output" in features:
        assert features["pooled_output"].shape == (rows, hidden)
    assert length <= adapter.max_positions


def test_parameter_groups_cover_every_encoder_weight(adapter):
    """Every weight the features use (a backbone's unused pooler may have none)."""
    valid = {"embeddings", "pooler", *(f"layer_{i}" for i in range(adapter.num_layers))}
    weights = encoder_features_model(adapter).weights
    groups = {v.path: adapter.parameter_group(v.path) for v in weights}
    outside = {path: group for path, group in groups.items() if group not in valid}
    assert outside == {}
    assert {"embeddings", *(f"layer_{i}" for i in range(adapter.num_layers))} <= set(
        groups.values()
    )
    assert adapter.parameter_group("logits/kernel") is None


def test_lora_layers_and_word_embeddings(adapter):
    layers = adapter.lora_layers(["query", "value"])
    assert layers and all(hasattr(layer, "enable_lora") for layer in layers)
    assert {layer.name.removesuffix("_dense") for layer in layers} == {"query", "value"}
    with pytest.raises(ValueError, match="qkv match no layer"):
        adapter.lora_layers(["qkv"])
    embeddings = adapter.word_embeddings
    assert embeddings.shape[0] == adapter.tokenizer.vocabulary_size
    assert any(embeddings is v for v in adapter.backbone.weights)


def test_record_and_tokenizer_files_rebuild_the_same_encoder(adapter, batches, tmp_path):
    stored = json.loads(json.dumps(write_encoder_files(adapter, tmp_path), default=str))
    rebuilt = rebuild_encoder(stored, tmp_path)
    assert type(rebuilt) is type(adapter) and rebuilt.input_names == adapter.input_names
    assert rebuilt.tokenizer.fingerprint() == adapter.tokenizer.fingerprint()
    # The rebuilt tokenizer's ids (in a graph, as the data pipeline runs it) on every text and
    # pair equal the original's.
    rebuilt_batch = encode(rebuilt, TEXTS, PAIRS)
    assert sorted(rebuilt_batch) == sorted(batches[True])
    for name, value in batches[True].items():
        np.testing.assert_array_equal(rebuilt_batch[name], value)
    # Every weight the features use (a family's pooler may live outside its backbone).
    source, target = encoder_features_model(adapter), encoder_features_model(rebuilt)
    target.set_weights(source.get_weights())
    inputs = batches[False]
    expected, actual = keras.tree.map_structure(np.asarray, (source(inputs), target(inputs)))
    for name in expected:
        for a, b in zip(
            keras.tree.flatten(expected[name]), keras.tree.flatten(actual[name]), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_classifier_runs_on_the_text_encoder_inputs(adapter, batches):
    model = build_classifier(adapter, get_head({"name": "pooling", "pooling": "mean"}), 3)
    assert set(model.input) == set(adapter.input_names)
    logits = np.asarray(model.predict_on_batch(batches[True]))
    assert logits.shape == (len(TEXTS), 3) and np.isfinite(logits).all()


class MseTask:
    name = "mse"

    def compute_loss(self, targets, outputs):
        return keras.losses.MeanSquaredError()(targets, outputs)


def test_layerwise_rates_freezing_lora_and_fgm_work_through_the_adapter(adapter, batches):
    """One FGM step with layer-wise rates on a LoRA model whose top layer alone trains.

    A fresh adapter of the family (LoRA, freezing and re-initialising change the model), fed
    the shared adapter's ids: the same seed builds the same tokenizer."""
    shared, adapter = adapter, tiny_adapter(adapter.family)
    assert adapter.tokenizer.fingerprint() == shared.tokenizer.fingerprint()
    head = get_head({"name": "pooling", "pooling": "mean"})
    model = build_classifier(adapter, head, 3, TaskModel)
    top = f"layer_{adapter.num_layers - 1}"
    assert reinitialize_top_layers(model, 1)[0] == top
    finetune = FinetuneConfig(train_top_layers=1, lora_rank=2)
    adapted = enable_lora(model, 2, 4.0, ["query", "value"], [adapter.num_layers - 1])
    set_trainable(model, finetune)
    groups = parameter_groups(model)
    trainable = {id(v) for v in model.trainable_weights}
    lora = [v for v in groups[top] if "lora" in v.name]
    assert adapted and lora and {id(v) for v in lora} <= trainable
    assert not any(id(v) in trainable for v in groups["embeddings"] + groups["layer_0"])
    spec = {"name": "adamw", "learning_rate": 1e-3, "layerwise_lr_decay": 0.8}
    optimizer = OPTIMIZERS.build(spec)
    model.compile(optimizer=optimizer(model, SCHEDULES.build("constant"), 2))
    model.plan = step_plan([MseTask()], [model], [TaskStep(0)], FGM(0.1))
    targets = np.zeros((len(TEXTS), 3), np.float32)
    logs = tf.function(model.train_step)((0, ((batches[False], targets),)))
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["adversarial_loss"])


def test_pooler_mode_without_a_pooler_names_the_head_argument():
    head = get_head({"name": "pooling", "pooling": "pooler"})
    features = {
        "sequence_output": keras.ops.zeros((2, 3, 4)),
        "hidden_states": [keras.ops.zeros((2, 3, 4))],
        "padding_mask": keras.ops.ones((2, 3), "int32"),
    }
    with pytest.raises(ValueError, match="head.pooling: 'pooler' needs an encoder with a pooler"):
        head(features)


def test_no_module_outside_encoders_names_a_bert_layer():
    pattern = re.compile("|".join(re.escape(name) for name in BERT_NAMES))
    offenders = []
    for path in sorted((REPO / "xtune").rglob("*.py")):
        if "encoders" in path.relative_to(REPO / "xtune").parts[:1]:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
