"""Score losses (mse, cosine, cosent) against loop-over-pairs numpy references."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from xtune.losses import (
    SCORE_LOSSES,
    CoSENTLoss,
    CosineSimilarityLoss,
    MeanSquaredError,
    ScoreLoss,
    get_score_loss,
)
from xtune.losses.cosent import cosent
from xtune.losses.mse import bounded_score

RNG = np.random.default_rng(0)


def reference_cosent(labels, cosines, scale=20.0):
    """log(1 + sum over pairs with y_i > y_j of exp(scale * (cos_j - cos_i))), by loops."""
    total = 1.0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if labels[i] > labels[j]:
                total += math.exp(scale * (cosines[j] - cosines[i]))
    return math.log(total)


def batches():
    """(labels, cosines): STS-like labels with ties, binary labels, and small/large gaps."""
    sts = RNG.integers(0, 6, size=12).astype("float32")  # 0..5, many ties
    return [
        (sts, RNG.uniform(-1, 1, size=12).astype("float32")),
        (RNG.uniform(0, 5, size=7).astype("float32"), RNG.uniform(-1, 1, size=7).astype("float32")),
        (np.array([1, 0, 1, 0, 0], "float32"), RNG.uniform(-1, 1, size=5).astype("float32")),
    ]


@pytest.mark.parametrize("index", range(3))
def test_cosent_matches_the_pairwise_reference(index):
    labels, cosines = batches()[index]
    got = float(CoSENTLoss()(labels, cosines))
    assert got == pytest.approx(reference_cosent(labels, cosines), rel=1e-5)
    got = float(CoSENTLoss(scale=5.0)(labels, cosines))
    assert got == pytest.approx(reference_cosent(labels, cosines, 5.0), rel=1e-5)


def test_cosent_docstring_example_and_no_ordered_pair():
    assert float(cosent([1.0, 0.0], [0.2, 0.4])) == pytest.approx(math.log(1 + math.exp(4.0)))
    # All labels tied: no ordered pair, so the loss is log(1) = 0 whatever the cosines.
    assert float(CoSENTLoss()(np.full(6, 3.0), RNG.uniform(-1, 1, 6))) == pytest.approx(0.0)


def test_cosent_does_not_overflow_for_badly_ordered_cosines():
    labels = np.array([5.0, 0.0], "float32")
    cosines = np.array([-1.0, 1.0], "float32")  # exp(40 * 2) overflows float32
    got = float(CoSENTLoss(scale=40.0)(labels, cosines))
    assert got == pytest.approx(80.0, rel=1e-6)


@pytest.mark.parametrize("low, high", [(0.0, 5.0), (-1.0, 1.0)])
def test_cosine_loss_matches_numpy(low, high):
    labels = RNG.uniform(low, high, size=9).astype("float32")
    labels[:3] = labels[3]  # ties are fine too
    cosines = RNG.uniform(-1, 1, size=9).astype("float32")
    expected = np.mean((cosines - (labels - low) / (high - low)) ** 2)
    loss = CosineSimilarityLoss(low=low, high=high)
    assert float(loss(labels, cosines)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(np.array([5.0, 0.0]), np.array([0.8, 0.1]))) == pytest.approx(
        np.mean((np.array([0.8, 0.1]) - (np.array([5.0, 0.0]) - low) / (high - low)) ** 2)
    )


def test_mse_matches_numpy_and_accepts_a_column():
    labels = RNG.uniform(0, 5, size=8).astype("float32")
    predictions = RNG.uniform(0, 5, size=8).astype("float32")
    expected = np.mean((predictions - labels) ** 2)
    assert float(MeanSquaredError()(labels, predictions)) == pytest.approx(expected, rel=1e-5)
    assert float(MeanSquaredError()(labels, predictions[:, None])) == pytest.approx(
        expected, rel=1e-5
    )
    assert float(CoSENTLoss()(labels[:, None], predictions[:, None])) == pytest.approx(
        reference_cosent(labels, predictions), rel=1e-5
    )


def test_scores_map_outputs_to_label_units():
    cosines = np.array([-1.0, 0.0, 0.5, 1.0], "float32")
    np.testing.assert_allclose(
        CosineSimilarityLoss(low=0, high=5).scores(cosines), [-5.0, 0.0, 2.5, 5.0]
    )
    np.testing.assert_allclose(CoSENTLoss(low=1, high=5).scores(cosines), [1.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(MeanSquaredError().scores(cosines[:, None]), cosines)
    np.testing.assert_allclose(
        bounded_score([0.0, 2.0, -50.0], 1.0, 5.0), [3.0, 1 + 4 / (1 + math.exp(-2)), 1.0]
    )


@pytest.mark.parametrize("name", SCORE_LOSSES.names())
def test_gradients_are_finite_and_the_loss_runs_in_tf_function(name):
    loss = get_score_loss(name)
    labels = tf.constant(RNG.integers(0, 6, size=10).astype("float32"))
    outputs = tf.Variable(RNG.uniform(-1, 1, size=10).astype("float32"))
    with tf.GradientTape() as tape:
        value = loss(labels, outputs)
    gradient = tape.gradient(value, outputs).numpy()
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)
    compiled = tf.function(lambda y, p: loss(y, p))
    assert float(compiled(labels, outputs)) == pytest.approx(float(value), rel=1e-6)
    assert float(compiled(labels[:4], outputs[:4])) == pytest.approx(
        float(loss(labels[:4], outputs[:4])), rel=1e-6
    )


@pytest.mark.parametrize("name", SCORE_LOSSES.names())
def test_float32_loss_from_bfloat16_outputs(name):
    loss = get_score_loss(name)
    labels = RNG.uniform(0, 5, size=6).astype("float32")
    outputs = tf.constant(RNG.uniform(-1, 1, size=6), dtype=tf.bfloat16)
    value = loss(labels, outputs)
    assert value.dtype == tf.float32
    assert float(value) == pytest.approx(
        float(loss(labels, tf.cast(outputs, tf.float32))), rel=1e-6
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "mse", "low": 1.0, "high": 4.0},
        {"name": "cosine", "low": -1.0, "high": 1.0},
        {"name": "cosent", "scale": 10.0, "low": 0.0, "high": 1.0},
    ],
)
def test_config_round_trip(spec):
    loss = get_score_loss(spec)
    assert get_score_loss(loss) is loss
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    for key, value in spec.items():
        if key != "name":
            assert getattr(restored, key) == value
    labels, cosines = batches()[0]
    assert float(restored(labels, cosines)) == pytest.approx(float(loss(labels, cosines)))


BAD = [
    (MeanSquaredError, {"low": 5.0, "high": 0.0}, "expected low < high"),
    (CosineSimilarityLoss, {"low": 2.0, "high": 2.0}, "expected low < high"),
    (CoSENTLoss, {"high": float("nan")}, "high: expected a number"),
    (CoSENTLoss, {"scale": 0.0}, "scale: expected a number"),
    (CoSENTLoss, {"low": "0"}, "low: expected a number"),
]


@pytest.mark.parametrize("cls, arguments, message", BAD, ids=[str(b[1]) for b in BAD])
def test_bad_arguments_raise(cls, arguments, message):
    with pytest.raises(ValueError, match=message):
        cls.check_arguments(**arguments)
    with pytest.raises(ValueError, match=message):
        cls(**arguments)
    name = {MeanSquaredError: "mse", CosineSimilarityLoss: "cosine", CoSENTLoss: "cosent"}[cls]
    with pytest.raises(ValueError, match=message):
        SCORE_LOSSES.check(name, arguments)


def test_every_score_loss_is_a_score_loss_with_a_known_output():
    assert SCORE_LOSSES.names() == ["cosent", "cosine", "mse"]
    for name in SCORE_LOSSES.names():
        SCORE_LOSSES.check(name, {"low": 0, "high": 1})
        loss = get_score_loss(name)
        assert isinstance(loss, ScoreLoss)
        assert loss.model_output in ("score", "cosine")
