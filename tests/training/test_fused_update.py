"""`optimizer.fused_update`: each variable's Adam step as TensorFlow's fused kernel
(`ResourceApplyAdam`), against Keras' element-wise Adam it replaces.

The kernel forms `1 - beta_1` and `1 - beta_2` in float32, Keras in float64: the stated
tolerance is float32 rounding (relative 1e-6 a step), and each test first checks that the
weights moved by far more than that, so a fused update that did nothing would fail."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import LossOnlyTask, bce, snapshot, tiny_batch, tiny_classifier
from tests.training.test_optimizers import DECAY, build
from xtune.training.optimizers import FusedAdam, ScaledAdamW, ScaledFusedAdamW
from xtune.training.task_model import TaskModel, TaskStep, step_plan

SHAPES = [(7, 5), (5,), (40, 3)]


def random_steps(count: int) -> list[list[np.ndarray]]:
    """Gradients of very different scales (Adam's step hardly depends on them)."""
    rng = np.random.default_rng(0)
    return [
        [rng.normal(size=s).astype(np.float32) * 10 ** rng.uniform(-4, 1) for s in SHAPES]
        for _ in range(count)
    ]


def adam_weights(optimizer: keras.optimizers.Optimizer, steps: list[list[np.ndarray]]) -> list:
    rng = np.random.default_rng(1)
    variables = [keras.Variable(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
    for gradients in steps:
        optimizer.apply([tf.constant(g) for g in gradients], variables)
    return [np.array(v) for v in variables]


def test_fused_adam_follows_keras_adam_within_float32_rounding():
    steps = random_steps(6)
    settings = {"learning_rate": 1e-2, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6}
    start = adam_weights(keras.optimizers.Adam(**settings), [])
    keras_weights = adam_weights(keras.optimizers.Adam(**settings), steps)
    fused_weights = adam_weights(FusedAdam(**settings), steps)
    for before, expected, fused in zip(start, keras_weights, fused_weights, strict=True):
        assert np.abs(expected - before).min() > 1e-4  # every weight moved, by ~6 steps of 1e-2
        np.testing.assert_allclose(fused, expected, rtol=1e-6, atol=1e-7)


def train_steps(fused: bool, lazy: bool, xla_update: bool = False, steps: int = 3) -> dict:
    """Weights after `steps` train steps of a tiny classifier through `TaskModel`'s step
    (global-norm clipping, weight decay and layer-wise rates on)."""
    x, y = tiny_batch()
    model = tiny_classifier(seed=0, model_class=TaskModel)
    model.plan = step_plan([LossOnlyTask(bce())], [model], [TaskStep(0)], xla_update=xla_update)
    optimizer = build(
        model,
        fused_update=fused,
        lazy_embeddings=lazy,
        clipnorm=1.0,
        weight_decay=0.1,
        layerwise_lr_decay=DECAY,
    )
    model.compile(optimizer=optimizer)
    model.optimizer.build(model.trainable_variables)
    step, data = tf.function(model.train_step), (tf.constant(0), ((x, tf.constant(y)),))
    for _ in range(steps):
        step(data)
    return snapshot(model)


@pytest.mark.parametrize("lazy", [False, True], ids=["dense", "lazy_embeddings"])
def test_fused_train_steps_keep_keras_adamw_numbers(lazy):
    start = train_steps(fused=False, lazy=lazy, steps=0)
    expected = train_steps(fused=False, lazy=lazy)
    fused = train_steps(fused=True, lazy=lazy)
    moved = [p for p in start if np.abs(expected[p] - start[p]).max() > 1e-4]
    assert len(moved) > len(start) // 2
    for path in start:
        np.testing.assert_allclose(fused[path], expected[path], rtol=1e-5, atol=1e-6)


def test_fused_update_compiles_with_xla():
    """`training.jit_compile: optimizer` compiles the fused kernel's update too."""
    expected = train_steps(fused=True, lazy=False)
    compiled = train_steps(fused=True, lazy=False, xla_update=True)
    for path in expected:
        np.testing.assert_allclose(compiled[path], expected[path], rtol=1e-5, atol=1e-6)


def test_the_optimizer_is_picked_by_the_setting_and_round_trips_its_config():
    model = tiny_classifier()
    assert type(build(model)) is ScaledAdamW
    optimizer = build(model, fused_update=True, beta_2=0.98)
    assert type(optimizer) is ScaledFusedAdamW
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is ScaledFusedAdamW
    assert restored.beta_2 == 0.98 and restored.epsilon == optimizer.epsilon
    assert restored.decoupled_weight_decay == optimizer.decoupled_weight_decay
