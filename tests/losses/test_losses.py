"""Every registered loss against a plain numpy version, at extreme logits, in bfloat16, saved."""

from __future__ import annotations

import json
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from xtune.losses import (
    LOSSES,
    BinaryCrossentropy,
    ClassificationLoss,
    FocalCrossentropy,
    get_loss,
)
from xtune.losses.binary_crossentropy import binary_crossentropy
from xtune.losses.focal_crossentropy import focal_crossentropy
from xtune.losses.multilabel_categorical_crossentropy import multilabel_categorical_crossentropy
from xtune.registry import RegistryError

# --- Plain numpy versions, in float64, written straight from each docstring's formula. ---


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _smooth(y, label_smoothing, num_classes=2):
    return y * (1.0 - label_smoothing) + label_smoothing / num_classes


def numpy_bce(y, x, label_smoothing=0.0, pos_weight=None):
    t = _smooth(y, label_smoothing)
    w = 1.0 if pos_weight is None else np.asarray(pos_weight)
    return -np.mean(w * t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x), axis=-1)


def numpy_focal(y, x, alpha=None, gamma=2.0, label_smoothing=0.0):
    t = _smooth(y, label_smoothing)
    p = 1.0 / (1.0 + np.exp(-x))
    alpha_pos, alpha_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    focal_if_pos = -alpha_pos * (1 - p) ** gamma * np.log(p)
    focal_if_neg = -alpha_neg * p**gamma * np.log(1 - p)
    return np.mean(t * focal_if_pos + (1 - t) * focal_if_neg, axis=-1)


def numpy_multilabel_ce(y, x, label_smoothing=0.0):
    t = _smooth(y, label_smoothing)
    return np.log1p(np.sum(t * np.exp(-x), axis=-1)) + np.log1p(np.sum((1 - t) * np.exp(x), -1))


def numpy_softmax_ce(y, x, label_smoothing=0.0):
    t = _smooth(y, label_smoothing, num_classes=y.shape[-1])
    log_softmax = x - x.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    return -np.sum(t * log_softmax, axis=-1)


NUMPY_REFERENCES = {
    "bce": numpy_bce,
    "focal": numpy_focal,
    "multilabel_ce": numpy_multilabel_ce,
    "softmax_ce": numpy_softmax_ce,
}


def configs(name, num_labels):
    """Hyper-parameter settings worth testing for each loss (the first is the default)."""
    smoothing = [{}, {"label_smoothing": 0.1}]
    extra = {
        "bce": [{"pos_weight": list(np.linspace(0.5, 4.0, num_labels)), "label_smoothing": 0.2}],
        "focal": [
            {"alpha": 0.25, "gamma": 2.0},
            {"alpha": 0.75, "gamma": 0.5, "label_smoothing": 0.2},
            {"gamma": 0.0},
        ],
    }
    return smoothing + extra.get(name, [])


def random_batch(loss, num_labels, seed, batch=8, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=scale, size=(batch, num_labels)).astype(np.float32)
    if loss.multi_label:
        y_true = (rng.random((batch, num_labels)) < 0.3).astype(np.float32)
    else:
        y_true = np.eye(num_labels, dtype=np.float32)[rng.integers(num_labels, size=batch)]
    return y_true, logits


def plain_function(loss_class):
    """The module-level function a loss class wraps (`xtune.losses.foo` holds `foo`)."""
    module = sys.modules[loss_class.__module__]
    return module, getattr(module, module.__name__.rsplit(".", 1)[-1])


# --- Tests run for every registered loss. ---


def test_every_loss_has_a_numpy_reference():
    assert set(LOSSES.names()) == set(NUMPY_REFERENCES), "add a numpy version for a new loss"


@pytest.mark.parametrize("num_labels", [3, 17, 250])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", LOSSES.names())
def test_matches_numpy_reference(name, seed, num_labels):
    for kwargs in configs(name, num_labels):
        loss = get_loss({"name": name, "reduction": None, **kwargs})
        y_true, logits = random_batch(loss, num_labels, seed)
        expected = NUMPY_REFERENCES[name](
            y_true.astype(np.float64), logits.astype(np.float64), **kwargs
        )
        per_example = ops.convert_to_numpy(loss(y_true, logits))
        np.testing.assert_allclose(per_example, expected, rtol=1e-5, atol=1e-6, err_msg=str(kwargs))
        # The default reduction is the batch mean of the same per-example values.
        mean = get_loss({"name": name, **kwargs})(y_true, logits)
        np.testing.assert_allclose(ops.convert_to_numpy(mean), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("magnitude", [50.0, 1e4])
@pytest.mark.parametrize("name", LOSSES.names())
def test_extreme_logits_give_finite_loss_and_gradients(name, magnitude):
    for kwargs in configs(name, 250):
        loss = get_loss({"name": name, **kwargs})
        y_true, logits = random_batch(loss, 250, seed=3)
        # Half the labels confidently right, half confidently wrong.
        signs = np.sign(
            np.where(y_true > 0, 1.0, -1.0) * np.random.default_rng(4).normal(size=logits.shape)
        )
        logits = tf.Variable(magnitude * signs.astype(np.float32))
        with tf.GradientTape() as tape:
            value = loss(y_true, logits)
        gradient = tape.gradient(value, logits)
        assert np.isfinite(value.numpy()) and value.numpy() >= 0, (kwargs, value)
        assert np.isfinite(gradient.numpy()).all(), kwargs


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", LOSSES.names())
def test_low_precision_logits_give_float32_results(name, dtype):
    loss = get_loss({"name": name, "reduction": None})
    y_true, logits = random_batch(loss, 17, seed=5)
    low = tf.constant(logits, dtype=dtype)
    exact = loss(y_true, tf.cast(low, "float32"))  # same logits, rounded the same way
    for value in (loss(y_true, low), plain_function(type(loss))[1](y_true, low), loss.scores(low)):
        assert value.dtype == "float32"
        assert np.isfinite(value.numpy()).all()
    np.testing.assert_allclose(loss(y_true, low).numpy(), exact.numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", LOSSES.names())
def test_decision_rule_on_a_hand_example(name):
    loss = get_loss(name)
    logits = np.array([[2.0, -1.0, 0.3, -0.2], [-3.0, -0.5, -0.1, -4.0]], np.float32)
    scores = loss.scores(logits)
    assert scores.dtype == "float32"
    assert np.all((scores.numpy() >= 0) & (scores.numpy() <= 1))
    if loss.multi_label:
        assert loss.default_threshold == 0.5  # logit > 0
        np.testing.assert_array_equal(loss.decide(scores), [[1, 0, 1, 0], [0, 0, 0, 0]])
        np.testing.assert_array_equal(loss.decide(scores, 0.2), [[1, 1, 1, 1], [0, 1, 1, 0]])
        per_label = [0.95, 0.1, 0.9, 0.1]
        np.testing.assert_array_equal(loss.decide(scores, per_label), [[0, 1, 0, 1], [0, 1, 0, 0]])
    else:
        assert loss.default_threshold is None  # top-1
        np.testing.assert_array_equal(loss.decide(scores), [[1, 0, 0, 0], [0, 0, 1, 0]])
        with pytest.raises(ValueError, match="takes no thresholds"):
            loss.decide(scores, 0.5)


@pytest.mark.parametrize("name", LOSSES.names())
def test_decide_works_inside_a_tf_function(name):
    loss = get_loss(name)
    thresholds = None if loss.default_threshold is None else tf.constant([0.5, 0.6, 0.7])

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.bfloat16)])
    def predict(logits):
        return loss.decide(loss.scores(logits), thresholds)

    predictions = predict(tf.constant([[0.1, 0.1, 2.0]], tf.bfloat16))
    assert predictions.dtype == tf.int32
    expected = [[1, 0, 1]] if loss.multi_label else [[0, 0, 1]]
    np.testing.assert_array_equal(predictions, expected)


@pytest.mark.parametrize("name", LOSSES.names())
def test_serialization_round_trip(name):
    kwargs = configs(name, 4)[-1]
    loss = get_loss({"name": name, **kwargs})
    saved = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    assert saved["registered_name"].startswith("xtune>")
    restored = keras.saving.deserialize_keras_object(saved)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    y_true, logits = random_batch(loss, 4, seed=6)
    np.testing.assert_array_equal(restored(y_true, logits), loss(y_true, logits))


@pytest.mark.parametrize("name", LOSSES.names())
def test_docstring_example_number(name):
    """The `>>>` example in each loss function's docstring prints the right number."""
    module, function = plain_function(LOSSES.get(name))
    call, answer = re.search(r">>> (.+)\n\s+\[([-\d.]+)\]", function.__doc__).groups()
    value = ops.convert_to_numpy(eval(call, vars(module)))  # noqa: S307 (our own docstring)
    decimals = len(answer.split(".")[1])
    assert value.shape == (1,)
    assert round(float(value[0]), decimals) == float(answer)


@pytest.mark.parametrize("name", LOSSES.names())
def test_contract(name):
    loss = LOSSES.get(name)()
    assert isinstance(loss, ClassificationLoss)
    assert (loss.default_threshold is None) == (not loss.multi_label)


# --- Loss-specific checks. ---


def test_focal_matches_keras_on_hard_targets():
    y_true, logits = random_batch(FocalCrossentropy(), 20, seed=7)
    for alpha in (None, 0.25):
        ours = focal_crossentropy(y_true, logits, alpha=alpha, gamma=2.0)
        theirs = keras.losses.binary_focal_crossentropy(
            y_true,
            logits,
            apply_class_balancing=alpha is not None,
            alpha=0.25 if alpha is None else alpha,
            gamma=2.0,
            from_logits=True,
        )
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_focal_with_gamma_0_and_no_alpha_is_bce():
    y_true, logits = random_batch(FocalCrossentropy(), 20, seed=8)
    np.testing.assert_allclose(
        focal_crossentropy(y_true, logits, alpha=None, gamma=0.0, label_smoothing=0.1),
        binary_crossentropy(y_true, logits, label_smoothing=0.1),
        rtol=1e-6,
    )


def test_focal_label_smoothing_is_the_expected_hard_loss():
    """With soft target t: loss = t * FL(y=1) + (1 - t) * FL(y=0); t = 0.9 or 0.1 here."""
    logits = np.array([[1.5], [-0.7]], np.float32)  # one label per example
    kwargs = {"alpha": 0.25, "gamma": 2.0}
    smoothed = focal_crossentropy([[1.0], [0.0]], logits, label_smoothing=0.2, **kwargs)
    if_positive = focal_crossentropy([[1.0], [1.0]], logits, **kwargs)
    if_negative = focal_crossentropy([[0.0], [0.0]], logits, **kwargs)
    t = np.array([0.9, 0.1])
    np.testing.assert_allclose(smoothed, t * if_positive + (1 - t) * if_negative, rtol=1e-6)


def _hard_multilabel_ce(y_true, logits):
    """Su's bert4keras formula (log-sum-exp with 1e12 masking and a 0 logit prepended)."""
    y_true = ops.cast(y_true, "float32")
    signed = (1.0 - 2.0 * y_true) * logits
    negatives = signed - y_true * 1e12
    positives = signed - (1.0 - y_true) * 1e12
    zeros = ops.zeros_like(logits[..., :1])
    return ops.logsumexp(ops.concatenate([zeros, negatives], -1), -1) + ops.logsumexp(
        ops.concatenate([zeros, positives], -1), -1
    )


@pytest.mark.parametrize("num_labels", [3, 250])
def test_multilabel_ce_without_smoothing_is_exactly_the_hard_loss(num_labels):
    y_true, logits = random_batch(BinaryCrossentropy(), num_labels, seed=9, scale=10.0)
    np.testing.assert_array_equal(
        multilabel_categorical_crossentropy(y_true, logits, label_smoothing=0.0),
        _hard_multilabel_ce(y_true, logits),
    )


def test_multilabel_ce_smoothed_minimum_is_at_sigmoid_of_twice_the_logit():
    """ZLPR: the soft-label loss is minimised where sigmoid(2 * s_i) = t_i for every label."""
    rng = np.random.default_rng(10)
    targets = rng.uniform(0.02, 0.98, size=(4, 30)).astype(np.float32)
    best_logits = tf.Variable(0.5 * np.log(targets / (1 - targets)))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(multilabel_categorical_crossentropy(targets, best_logits))
    np.testing.assert_allclose(tape.gradient(value, best_logits), 0.0, atol=1e-6)


# --- Construction and errors. ---


def test_get_loss_accepts_a_name_a_dict_or_an_instance():
    assert isinstance(get_loss("bce"), BinaryCrossentropy)
    focal = get_loss({"name": "focal", "alpha": 0.25, "gamma": 1.0})
    assert (focal.alpha, focal.gamma) == (0.25, 1.0)
    assert get_loss(focal) is focal


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(RegistryError, match="unknown loss 'bcee'; valid choices: bce, focal"):
        get_loss("bcee")


def test_bad_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="label_smoothing"):
        get_loss({"name": "multilabel_ce", "label_smoothing": 1.5})
    with pytest.raises(ValueError, match="alpha"):
        get_loss({"name": "focal", "alpha": 2.0})
    loss = get_loss({"name": "bce", "pos_weight": [1.0, 2.0]})
    with pytest.raises(ValueError, match="pos_weight has 2 entries but the model has 3 labels"):
        loss(np.zeros((1, 3)), np.zeros((1, 3)))
