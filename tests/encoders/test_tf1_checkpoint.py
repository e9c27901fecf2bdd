"""Tests for the TF1 BERT checkpoint converter: Google naming, exact round trips, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from xtune.encoders.tf1_checkpoint import (
    backbone_kwargs_from_bert_config,
    load_tf1_backbone,
    load_tf1_weights,
    read_bert_config,
    write_tf1_checkpoint,
)

TINY = {
    "vocabulary_size": 50,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 32,
    "intermediate_dim": 64,
    "max_sequence_length": 64,
}
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"token{i}" for i in range(45)]


def expected_google_shapes(num_layers: int = 2, hidden: int = 32, intermediate: int = 64) -> dict:
    """Google's variable names and shapes for the TINY backbone, spelled out independently."""
    shapes = {
        "bert/embeddings/word_embeddings": (50, hidden),
        "bert/embeddings/position_embeddings": (64, hidden),
        "bert/embeddings/token_type_embeddings": (2, hidden),
        "bert/embeddings/LayerNorm/gamma": (hidden,),
        "bert/embeddings/LayerNorm/beta": (hidden,),
        "bert/pooler/dense/kernel": (hidden, hidden),
        "bert/pooler/dense/bias": (hidden,),
    }
    for i in range(num_layers):
        layer = f"bert/encoder/layer_{i}"
        for projection in ("query", "key", "value"):
            shapes[f"{layer}/attention/self/{projection}/kernel"] = (hidden, hidden)
            shapes[f"{layer}/attention/self/{projection}/bias"] = (hidden,)
        shapes[f"{layer}/attention/output/dense/kernel"] = (hidden, hidden)
        shapes[f"{layer}/attention/output/dense/bias"] = (hidden,)
        shapes[f"{layer}/attention/output/LayerNorm/gamma"] = (hidden,)
        shapes[f"{layer}/attention/output/LayerNorm/beta"] = (hidden,)
        shapes[f"{layer}/intermediate/dense/kernel"] = (hidden, intermediate)
        shapes[f"{layer}/intermediate/dense/bias"] = (intermediate,)
        shapes[f"{layer}/output/dense/kernel"] = (intermediate, hidden)
        shapes[f"{layer}/output/dense/bias"] = (hidden,)
        shapes[f"{layer}/output/LayerNorm/gamma"] = (hidden,)
        shapes[f"{layer}/output/LayerNorm/beta"] = (hidden,)
    return shapes


def build_tiny_backbone(seed: int) -> keras_hub.models.BertBackbone:
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(**TINY)
    # Initializers leave biases at 0 and LayerNorms at 1/0; randomize every weight so a
    # weight that is silently not ported cannot pass by matching its default.
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    return backbone


def padded_batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    token_ids = rng.integers(0, TINY["vocabulary_size"], size=(3, 12)).astype("int32")
    segment_ids = rng.integers(0, 2, size=(3, 12)).astype("int32")
    padding_mask = np.ones((3, 12), dtype="int32")
    padding_mask[1, 7:] = 0
    padding_mask[2, 3:] = 0
    token_ids[padding_mask == 0] = 0
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}


def rewrite_checkpoint(
    source_prefix: Path,
    target_prefix: Path,
    drop: tuple[str, ...] = (),
    replace_or_add: dict[str, np.ndarray] | None = None,
) -> None:
    """Copies a checkpoint, dropping, replacing or adding variables, to fake broken releases."""
    reader = tf.train.load_checkpoint(str(source_prefix))
    tensors = {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name not in drop
    }
    tensors.update(replace_or_add or {})
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(target_prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tensors[name] for name in names],
    )


def copy_folder_with_checkpoint(source: Path, target: Path, **rewrite_kwargs) -> Path:
    target.mkdir(parents=True)
    shutil.copy(source / "bert_config.json", target / "bert_config.json")
    rewrite_checkpoint(source / "bert_model.ckpt", target / "bert_model.ckpt", **rewrite_kwargs)
    return target


@pytest.fixture(scope="module")
def source_backbone() -> keras_hub.models.BertBackbone:
    return build_tiny_backbone(seed=1)


@pytest.fixture(scope="module")
def tf1_folder(source_backbone, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tf1") / "tiny_bert"
    write_tf1_checkpoint(source_backbone, folder, vocabulary=VOCABULARY)
    return folder


def assert_same_weights(actual: keras.Model, expected: keras.Model) -> None:
    assert len(actual.weights) == len(expected.weights)
    for actual_weight, expected_weight in zip(actual.weights, expected.weights, strict=True):
        assert actual_weight.path == expected_weight.path
        difference = np.abs(np.asarray(actual_weight) - np.asarray(expected_weight)).max()
        assert difference == 0, actual_weight.path


def test_write_lists_exactly_googles_names_and_shapes(tf1_folder):
    reader = tf.train.load_checkpoint(str(tf1_folder / "bert_model.ckpt"))
    shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
    assert shapes == expected_google_shapes()
    assert {path.name for path in tf1_folder.iterdir()} == {
        "bert_config.json",
        "bert_model.ckpt.index",
        "bert_model.ckpt.data-00000-of-00001",
        "vocab.txt",
    }


def test_write_stores_attention_kernels_flat_in_keras_head_order(source_backbone, tf1_folder):
    reader = tf.train.load_checkpoint(str(tf1_folder / "bert_model.ckpt"))
    attention = source_backbone.get_layer("transformer_layer_1")._self_attention_layer
    query_kernel = np.asarray(attention.query_dense.kernel)  # [hidden, heads, head_dim]
    google_query = reader.get_tensor("bert/encoder/layer_1/attention/self/query/kernel")
    # Google's column h * head_dim + d is keras-hub's head h, dimension d.
    np.testing.assert_array_equal(google_query[:, 16:32], query_kernel[:, 1, :])
    output_kernel = np.asarray(attention.output_dense.kernel)  # [heads, head_dim, hidden]
    google_output = reader.get_tensor("bert/encoder/layer_1/attention/output/dense/kernel")
    np.testing.assert_array_equal(google_output[16:32, :], output_kernel[1])


def test_write_config_and_vocabulary_round_trip(tf1_folder):
    config = read_bert_config(tf1_folder)
    assert config["hidden_act"] == "gelu"
    assert backbone_kwargs_from_bert_config(config) == {**TINY, "num_segments": 2, "dropout": 0.1}
    lines = (tf1_folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert lines == VOCABULARY


def test_load_tf1_backbone_reproduces_weights_and_outputs_exactly(source_backbone, tf1_folder):
    keras.utils.set_random_seed(2)
    loaded = load_tf1_backbone(tf1_folder)
    assert_same_weights(loaded, source_backbone)
    batch = padded_batch()
    expected = source_backbone.predict(batch, verbose=0)
    actual = loaded.predict(batch, verbose=0)
    for key in ("sequence_output", "pooled_output"):
        assert np.abs(actual[key] - expected[key]).max() == 0, key


def google_bert_reference(
    checkpoint_prefix: Path, batch: dict[str, np.ndarray], num_layers: int, num_heads: int
) -> dict[str, np.ndarray]:
    """Google's modeling.py forward pass in float64 NumPy, reading the checkpoint by name."""
    reader = tf.train.load_checkpoint(str(checkpoint_prefix))

    def weight(name: str) -> np.ndarray:
        return reader.get_tensor(name).astype("float64")

    def layer_norm(x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        variance = x.var(-1, keepdims=True)
        normalized = (x - mean) / np.sqrt(variance + 1e-12)
        return normalized * weight(f"{prefix}/LayerNorm/gamma") + weight(f"{prefix}/LayerNorm/beta")

    def dense(x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ weight(f"{prefix}/kernel") + weight(f"{prefix}/bias")

    def gelu(x: np.ndarray) -> np.ndarray:  # modeling.py's tanh approximation
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    token_ids, segment_ids = batch["token_ids"], batch["segment_ids"]
    batch_size, length = token_ids.shape
    x = (
        weight("bert/embeddings/word_embeddings")[token_ids]
        + weight("bert/embeddings/token_type_embeddings")[segment_ids]
        + weight("bert/embeddings/position_embeddings")[:length]
    )
    x = layer_norm(x, "bert/embeddings")
    hidden = x.shape[-1]
    head_dim = hidden // num_heads
    mask_bias = (1.0 - batch["padding_mask"][:, None, None, :]) * -10000.0

    def split_heads(t: np.ndarray) -> np.ndarray:
        return t.reshape(batch_size, length, num_heads, head_dim).transpose(0, 2, 1, 3)

    for i in range(num_layers):
        layer = f"bert/encoder/layer_{i}"
        query, key, value = (
            split_heads(dense(x, f"{layer}/attention/self/{name}"))
            for name in ("query", "key", "value")
        )
        scores = query @ key.transpose(0, 1, 3, 2) / np.sqrt(head_dim) + mask_bias
        probabilities = np.exp(scores - scores.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        context = (probabilities @ value).transpose(0, 2, 1, 3).reshape(batch_size, length, hidden)
        x = layer_norm(
            dense(context, f"{layer}/attention/output/dense") + x, f"{layer}/attention/output"
        )
        intermediate = gelu(dense(x, f"{layer}/intermediate/dense"))
        x = layer_norm(dense(intermediate, f"{layer}/output/dense") + x, f"{layer}/output")
    pooled = np.tanh(dense(x[:, 0], "bert/pooler/dense"))
    return {"sequence_output": x, "pooled_output": pooled}


def test_loaded_backbone_matches_googles_bert_forward_pass(tf1_folder):
    # The round trips above cannot see a mapping error that write and load share (say key
    # and value swapped); an independent implementation of Google's BERT can.
    batch = padded_batch()
    reference = google_bert_reference(
        tf1_folder / "bert_model.ckpt", batch, TINY["num_layers"], TINY["num_heads"]
    )
    outputs = load_tf1_backbone(tf1_folder).predict(batch, verbose=0)
    real = batch["padding_mask"].astype(bool)
    np.testing.assert_allclose(
        outputs["sequence_output"][real], reference["sequence_output"][real], atol=1e-4
    )
    np.testing.assert_allclose(outputs["pooled_output"], reference["pooled_output"], atol=1e-4)


def test_load_ignores_mlm_head_and_optimizer_slots(source_backbone, tf1_folder, tmp_path):
    extras = {
        "cls/predictions/output_bias": np.zeros(50, dtype="float32"),
        "cls/predictions/transform/dense/kernel": np.ones((32, 32), dtype="float32"),
        "bert/encoder/layer_0/output/dense/kernel/adam_m": np.ones((64, 32), dtype="float32"),
        "bert/encoder/layer_0/output/dense/kernel/adam_v": np.ones((64, 32), dtype="float32"),
        "global_step": np.array(1000, dtype="int64"),
    }
    prefix = tmp_path / "bert_model.ckpt"
    rewrite_checkpoint(tf1_folder / "bert_model.ckpt", prefix, replace_or_add=extras)
    target = build_tiny_backbone(seed=3)
    load_tf1_weights(target, prefix)
    assert_same_weights(target, source_backbone)


def test_missing_variable_names_checkpoint_variable_and_shape(tf1_folder, tmp_path):
    missing = "bert/encoder/layer_1/attention/self/key/kernel"
    folder = copy_folder_with_checkpoint(tf1_folder, tmp_path / "broken", drop=(missing,))
    with pytest.raises(ValueError) as error:
        load_tf1_backbone(folder)
    message = str(error.value)
    assert str(folder / "bert_model.ckpt") in message
    assert f"missing {missing} (expected shape (32, 32))" in message


def test_wrong_shape_names_variable_found_and_expected_shape(tf1_folder, tmp_path):
    name = "bert/encoder/layer_0/intermediate/dense/kernel"
    prefix = tmp_path / "bert_model.ckpt"
    wrong = {name: np.zeros((32, 65), dtype="float32")}
    rewrite_checkpoint(tf1_folder / "bert_model.ckpt", prefix, replace_or_add=wrong)
    target = build_tiny_backbone(seed=4)
    before = [np.asarray(weight).copy() for weight in target.weights]
    with pytest.raises(ValueError) as error:
        load_tf1_weights(target, prefix)
    message = str(error.value)
    assert str(prefix) in message
    assert f"{name} has shape (32, 65), expected (32, 64)" in message
    # Everything is checked before anything is assigned.
    for weight, original in zip(target.weights, before, strict=True):
        np.testing.assert_array_equal(np.asarray(weight), original)


def test_missing_checkpoint_files_name_the_prefix(tmp_path):
    target = build_tiny_backbone(seed=5)
    with pytest.raises(FileNotFoundError, match="nowhere/bert_model.ckpt.index"):
        load_tf1_weights(target, tmp_path / "nowhere" / "bert_model.ckpt")


def test_folder_without_checkpoint_says_what_was_expected(tf1_folder, tmp_path):
    shutil.copy(tf1_folder / "bert_config.json", tmp_path / "bert_config.json")
    with pytest.raises(FileNotFoundError, match=r"bert_model\.ckpt\.index.*found: none"):
        load_tf1_backbone(tmp_path)


def test_missing_bert_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_tf1_backbone(tmp_path)
    assert str(tmp_path / "bert_config.json") in str(error.value)


def test_bert_config_missing_key_names_file_and_key(tmp_path):
    config = {
        "vocab_size": 21128,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
    }
    (tmp_path / "bert_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError) as error:
        read_bert_config(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "bert_config.json") in message
    assert "num_attention_heads" in message


def test_backbone_kwargs_from_chinese_roberta_wwm_ext_config():
    config = {
        "attention_probs_dropout_prob": 0.1,
        "directionality": "bidi",
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 768,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pooler_fc_size": 768,
        "pooler_num_attention_heads": 12,
        "pooler_num_fc_layers": 3,
        "pooler_size_per_head": 128,
        "pooler_type": "first_token_transform",
        "type_vocab_size": 2,
        "vocab_size": 21128,
    }
    assert backbone_kwargs_from_bert_config(config) == {
        "vocabulary_size": 21128,
        "num_layers": 12,
        "num_heads": 12,
        "hidden_dim": 768,
        "intermediate_dim": 3072,
        "max_sequence_length": 512,
        "num_segments": 2,
        "dropout": 0.1,
    }


def test_write_rejects_vocabulary_of_wrong_length(source_backbone, tmp_path):
    with pytest.raises(ValueError, match="vocabulary has 3 tokens.*vocabulary_size is 50"):
        write_tf1_checkpoint(source_backbone, tmp_path, vocabulary=["a", "b", "c"])
