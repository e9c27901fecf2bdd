"""Bi-encoder pieces: pair features, cosine score and masked mean pooling against numpy."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from xtune.heads import CosineScore, PairFeatures, masked_mean_pool
from xtune.heads.pair import PAIR_PARTS

RNG = np.random.default_rng(2)
U = RNG.normal(size=(5, 4)).astype("float32")
V = RNG.normal(size=(5, 4)).astype("float32")
NUMPY_PARTS = {"u": U, "v": V, "abs_diff": np.abs(U - V), "product": U * V}
SUBSETS = [
    list(subset)
    for size in range(1, len(PAIR_PARTS) + 1)
    for subset in itertools.permutations(PAIR_PARTS, size)
    if size in (1, 4) or subset[0] == "abs_diff"
]


@pytest.mark.parametrize("parts", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_pair_features_match_numpy(parts):
    got = PairFeatures(parts=parts)([U, V])
    expected = np.concatenate([NUMPY_PARTS[part] for part in parts], axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert PairFeatures(parts=parts).compute_output_shape(((None, 4), (None, 4))) == (
        None,
        4 * len(parts),
    )


def test_pair_features_default_is_sentence_bert_order_and_docstring_example():
    expected = np.concatenate([U, V, np.abs(U - V), U * V], axis=-1)
    np.testing.assert_allclose(PairFeatures()([U, V]), expected, rtol=1e-6)
    got = PairFeatures(parts=["abs_diff", "product"])(
        [np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])]
    )
    np.testing.assert_allclose(got, [[2.0, 3.0, 3.0, -2.0]])


@pytest.mark.parametrize(
    "parts, message",
    [
        (["u", "diff"], "unknown part 'diff'; valid: u, v, abs_diff, product"),
        ([], "at least one part"),
        (["u", "u"], "repeats a part"),
        (3, "expected a part or a list"),
    ],
)
def test_pair_features_refuse_bad_parts(parts, message):
    with pytest.raises(ValueError, match=message):
        PairFeatures(parts=parts)
    with pytest.raises(ValueError, match=message):
        PairFeatures.check_arguments(parts=parts)


def test_cosine_score_matches_numpy_and_is_safe_for_zero_vectors():
    expected = np.sum(U * V, axis=-1) / (np.linalg.norm(U, axis=-1) * np.linalg.norm(V, axis=-1))
    got = CosineScore()([U, V])
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    got = CosineScore()([np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])])
    np.testing.assert_allclose(got, [np.sqrt(0.5)], rtol=1e-6)

    u = tf.Variable(np.vstack([np.zeros((1, 4)), U[:1]]).astype("float32"))
    with tf.GradientTape() as tape:
        cosines = CosineScore()([u, V[:2]])
    assert float(cosines[0]) == 0.0
    assert np.all(np.isfinite(tape.gradient(cosines, u).numpy()))


def test_cosine_score_computes_in_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = CosineScore()
        got = layer([tf.constant(U, tf.bfloat16), tf.constant(V, tf.bfloat16)])
    finally:
        keras.config.set_dtype_policy(previous)
    assert got.dtype == tf.float32
    u32, v32 = (
        U.astype(tf.bfloat16.as_numpy_dtype).astype("float32"),
        V.astype(tf.bfloat16.as_numpy_dtype).astype("float32"),
    )
    expected = np.sum(u32 * v32, -1) / (np.linalg.norm(u32, axis=-1) * np.linalg.norm(v32, axis=-1))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_masked_mean_pool_ignores_padded_positions():
    states = RNG.normal(size=(3, 6, 4)).astype("float32")
    mask = np.array([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], "int32")
    expected = np.stack([states[i, : mask[i].sum()].mean(axis=0) for i in range(3)])
    np.testing.assert_allclose(masked_mean_pool(states, mask), expected, rtol=1e-5)
    changed = np.where(mask[..., None] == 1, states, 1e4).astype("float32")
    np.testing.assert_allclose(masked_mean_pool(changed, mask), expected, rtol=1e-5)


def test_serialization_round_trip_in_a_saved_model(tmp_path):
    u_in = keras.Input((4,), name="u")
    v_in = keras.Input((4,), name="v")
    features = PairFeatures(parts=["abs_diff", "u"], name="pair_features")([u_in, v_in])
    cosine = CosineScore(epsilon=1e-6, name="cosine")([u_in, v_in])
    model = keras.Model([u_in, v_in], [features, cosine])
    path = tmp_path / "pair.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    for before, after in zip(model([U, V]), restored([U, V]), strict=True):
        np.testing.assert_allclose(before, after, rtol=1e-6)
    assert restored.get_layer("pair_features").parts == ["abs_diff", "u"]
    assert restored.get_layer("cosine").epsilon == 1e-6
    for layer in (PairFeatures(parts=["product"]), CosineScore()):
        config = keras.saving.serialize_keras_object(layer)
        assert config["registered_name"].startswith("xtune>")
        again = keras.saving.deserialize_keras_object(config)
        assert again.get_config() == layer.get_config()
