"""`optimizer.lazy_embeddings`: the word embedding's Adam step, moments and weight decay on the
rows a step's tokens touch only, against a numpy reference of LazyAdam."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import (
    NUM_LAYERS,
    TINY_VOCAB,
    bce,
    snapshot,
    tiny_batch,
    tiny_classifier,
)
from tests.training.test_optimizers import DECAY, LR, build
from xtune.config import parse_run_config
from xtune.model import adapter_of
from xtune.registry import ConfigError
from xtune.training.optimizers import gradients_for_clipping

WEIGHT_DECAY, BETA_1, BETA_2, EPSILON = 0.1, 0.9, 0.999, 1e-6


def reference_lazy_adamw(
    table: np.ndarray, steps: list[dict[int, np.ndarray]], lr: float
) -> np.ndarray:
    """LazyAdam with decoupled decay: each step's {row: summed gradient} moves those rows."""
    table = table.astype(np.float64).copy()
    m, v = np.zeros_like(table), np.zeros_like(table)
    for t, rows in enumerate(steps, start=1):
        alpha = lr * np.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
        for row, gradient in rows.items():
            table[row] -= table[row] * WEIGHT_DECAY * lr
            m[row] = BETA_1 * m[row] + (1 - BETA_1) * gradient
            v[row] = BETA_2 * v[row] + (1 - BETA_2) * gradient**2
            table[row] -= alpha * m[row] / (np.sqrt(v[row]) + EPSILON)
    return table


def test_lazy_updates_move_only_touched_rows_as_the_numpy_reference():
    model = tiny_classifier()
    embeddings = adapter_of(model).word_embeddings
    optimizer = build(
        model,
        lazy_embeddings=True,
        layerwise_lr_decay=DECAY,
        weight_decay=WEIGHT_DECAY,
        clipnorm=None,
    )
    optimizer.build(model.trainable_variables)
    start = np.array(embeddings)
    rng = np.random.default_rng(0)
    width = start.shape[1]
    # Step 1 repeats row 1 (its gradients add up); step 3 comes dense, as accumulation makes it.
    slices = [([1, 3, 1], rng.normal(size=(3, width))), ([3, 5], rng.normal(size=(2, width)))]
    dense = np.zeros_like(start)
    dense[7] = rng.normal(size=width)
    gradients = [
        tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(rows), start.shape)
        for rows, values in slices
    ] + [tf.constant(dense, tf.float32)]
    for gradient in gradients:
        optimizer.apply([gradient], [embeddings])

    steps = [
        {1: slices[0][1][0] + slices[0][1][2], 3: slices[0][1][1]},
        {3: slices[1][1][0], 5: slices[1][1][1]},
        {7: dense[7]},
    ]
    expected = reference_lazy_adamw(start, steps, LR * DECAY ** (NUM_LAYERS + 1))
    after = np.array(embeddings)
    np.testing.assert_allclose(after, expected, rtol=2e-5, atol=1e-7)
    untouched = np.setdiff1d(np.arange(len(start)), [1, 3, 5, 7])
    np.testing.assert_array_equal(after[untouched], start[untouched])  # no decay, no step


def test_clipping_keeps_lazy_slices_sparse_with_each_row_once():
    model = tiny_classifier()
    embeddings = adapter_of(model).word_embeddings
    optimizer = build(model, lazy_embeddings=True, clipnorm=1.0)
    repeated = tf.IndexedSlices(tf.ones((3, 2)), tf.constant([4, 0, 4]), tf.constant([6, 2]))
    (prepared,) = gradients_for_clipping(optimizer, [repeated], [embeddings])
    assert isinstance(prepared, tf.IndexedSlices)
    # static shapes (XLA): the slices' indices; a row's first slice has its sum, repeats zeros
    assert prepared.indices.numpy().tolist() == [4, 0, 4]
    np.testing.assert_array_equal(prepared.values.numpy(), [[2, 2], [1, 1], [0, 0]])
    # the norm Keras' clipping then sums row by row: sqrt(2*2^2 + 2*1^2), as the dense one
    dense_norm = float(tf.norm(tf.convert_to_tensor(repeated)))
    assert float(tf.norm(prepared.values)) == pytest.approx(dense_norm)


def embedding_gradient_at_the_update(lazy: bool) -> tuple[object, np.ndarray, list]:
    """The word embedding's gradient as `update_step` gets it, after one clipped apply of
    rows 3, 1, 3 (0.5 each) and 0.25 everywhere else; also the table's shape, the variables."""
    model = tiny_classifier()
    variables = model.trainable_variables
    embeddings = adapter_of(model).word_embeddings
    optimizer = build(model, lazy_embeddings=lazy, clipnorm=1.0)
    optimizer.build(variables)
    assert (optimizer.global_clipnorm is None) == lazy  # xtune clips lazy rows itself
    rows = tf.constant([3, 1, 3])
    slices = tf.IndexedSlices(tf.fill((3, embeddings.shape[1]), 0.5), rows, embeddings.shape)
    gradients = [slices if v is embeddings else tf.fill(v.shape, 0.25) for v in variables]
    original, reached = type(optimizer).update_step, []

    def spy(self, gradient, variable, learning_rate):
        if tuple(variable.shape) == tuple(embeddings.shape):  # (the backend variable)
            reached.append(gradient)
        original(self, gradient, variable, learning_rate)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(optimizer), "update_step", spy)
        optimizer.apply(gradients_for_clipping(optimizer, gradients, variables), variables)
    others = [v for v in variables if v.path != embeddings.path]
    return reached[0], tuple(embeddings.shape), others


def test_lazy_rows_are_clipped_as_slices_as_keras_clips_the_dense_gradient():
    """With lazy rows xtune clips the global norm itself, keeping the word embedding's
    gradient as slices; its rows reach the update scaled as Keras' clipping of the dense
    gradient scales them (here by 1 / the numpy global norm)."""
    lazy, shape, others = embedding_gradient_at_the_update(lazy=True)
    dense, _, _ = embedding_gradient_at_the_update(lazy=False)
    assert isinstance(lazy, tf.IndexedSlices) and not isinstance(dense, tf.IndexedSlices)
    squares = sum(0.25**2 * np.prod(v.shape) for v in others) + shape[1] * (1.0**2 + 0.5**2)
    expected = np.zeros(shape)
    expected[3], expected[1] = 1.0 / np.sqrt(squares), 0.5 / np.sqrt(squares)  # row 3 twice
    np.testing.assert_allclose(np.array(dense), expected, rtol=1e-6)
    np.testing.assert_allclose(np.array(tf.convert_to_tensor(lazy)), expected, rtol=1e-6)


def stepped_lazy_model(
    lazy: bool, steps: int = 2, jit: bool = False, attack=None, **settings
) -> tuple[object, np.ndarray, dict]:
    """A tiny `TaskModel` (clipping 1.0) after `steps` train steps on `tiny_batch()`, with the
    word embedding's table and every weight from before the steps."""
    from tests.training.conftest import LossOnlyTask
    from xtune.training.task_model import TaskModel, TaskStep, step_plan

    x, y = tiny_batch()
    model = tiny_classifier(seed=0, model_class=TaskModel)
    model.plan = step_plan([LossOnlyTask(bce())], [model], [TaskStep(0)], attack)
    model.compile(optimizer=build(model, lazy_embeddings=lazy, clipnorm=1.0, **settings))
    model.optimizer.build(model.trainable_variables)
    before, weights = np.array(adapter_of(model).word_embeddings), snapshot(model)
    step = tf.function(model.train_step, jit_compile=jit)
    for _ in range(steps):
        step((tf.constant(0), ((x, tf.constant(y)),)))
    return model, before, weights


def test_a_train_step_leaves_absent_tokens_rows_alone_only_when_lazy():
    """Through `TaskModel`'s step (global-norm clipping on): with lazy updates the rows of
    tokens outside the batch keep their values bitwise; without, weight decay moves them."""
    present = np.unique(tiny_batch()[0]["token_ids"])
    moved = {}
    for lazy in (False, True):
        model, before, weights = stepped_lazy_model(lazy)
        embeddings = adapter_of(model).word_embeddings
        rows_changed = np.any(np.array(embeddings) != before, axis=1)
        moved[lazy] = set(np.flatnonzero(rows_changed).tolist())
        others = [p for p in weights if p != embeddings.path]
        assert all(not np.array_equal(np.array(snapshot(model)[p]), weights[p]) for p in others[:3])
    assert moved[True] == set(present.tolist())
    assert moved[False] == set(range(len(before)))


def test_lazy_rows_in_an_xla_compiled_step_as_in_the_plain_step():
    """`jit_compile: true` with lazy rows and clipping: the static-shaped row update and
    xtune's clip compile, move the batch's rows only and end within float32 rounding of the
    plain step. (`jit_compile: optimizer` compiles the same update alone.)"""
    present = np.unique(tiny_batch()[0]["token_ids"])
    after = {}
    for jit in (False, True):
        model, before, _ = stepped_lazy_model(lazy=True, jit=jit)
        after[jit] = snapshot(model)
        table = np.array(adapter_of(model).word_embeddings)
        moved = np.flatnonzero(np.any(table != before, axis=1))
        assert moved.tolist() == present.tolist()
    for path, value in after[False].items():
        np.testing.assert_allclose(after[True][path], value, rtol=1e-5, atol=1e-7, err_msg=path)


@pytest.mark.parametrize(
    ("training", "message"),
    [({"distribution": "mirrored"}, "lazy_embeddings (rows touched by one replica")],
)
def test_lazy_embeddings_refuses_mirroring_with_one_error(training, message):
    raw = {
        "data": {"train": "train.csv"},
        "encoder": {"name": "random", "vocabulary": str(TINY_VOCAB)},
        "optimizer": {"name": "adamw", "lazy_embeddings": True},
        "training": training,
    }
    with pytest.raises(ConfigError, match="lazy_embeddings") as error:
        parse_run_config(raw, source="run.yaml")
    assert message in str(error.value) and str(error.value).startswith("run.yaml")


@pytest.mark.parametrize(
    ("settings", "attack"),
    [
        ({"gradient_accumulation_steps": 2}, None),
        ({"use_ema": True}, None),
        ({}, {"name": "fgm", "epsilon": 1.0}),
    ],
    ids=["accumulation", "ema", "fgm"],
)
def test_lazy_rows_with_accumulation_ema_and_fgm(settings, attack):
    """Accumulated (dense) gradients, EMA and an adversarial step keep to the batch's rows."""
    from xtune.training.adversarial import get_attack

    attack = get_attack(attack) if attack else None
    model, before, _ = stepped_lazy_model(lazy=True, attack=attack, **settings)
    table = np.array(adapter_of(model).word_embeddings)
    moved = np.flatnonzero(np.any(table != before, axis=1))
    assert moved.tolist() == np.unique(tiny_batch()[0]["token_ids"]).tolist()
