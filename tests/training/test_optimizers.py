"""What the optimizers do to each weight: per-group step sizes, weight decay, accumulation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import NUM_LAYERS, bce, snapshot, tiny_batch, tiny_classifier
from xtune.training.layerwise import group_names, parameter_groups
from xtune.training.optimizers import OPTIMIZERS, gradients_for_clipping
from xtune.training.schedules import SCHEDULES

LR, DECAY, HEAD_LR = 1e-3, 0.5, 1e-2


def build(model, total_steps=10, schedule="constant", **kwargs):
    spec = {"name": "adamw", "learning_rate": LR, **kwargs}
    return OPTIMIZERS.build(spec)(model, SCHEDULES.build(schedule), total_steps)


def step_sizes(model, optimizer, gradient_value: float = 1.0) -> dict[str, float]:
    """Mean |change| of each parameter group after one step with a constant gradient."""
    variables = model.trainable_variables
    before = snapshot(model)
    optimizer.apply([tf.fill(v.shape, gradient_value) for v in variables], variables)
    after = snapshot(model)
    return {
        group: float(np.mean([np.abs(after[v.path] - before[v.path]).mean() for v in members]))
        for group, members in parameter_groups(model).items()
    }


@pytest.mark.parametrize(
    ("schedule", "first_rate"),
    [("constant", LR), ({"name": "linear", "warmup_steps": 4}, LR / 4)],
)
def test_step_sizes_follow_layerwise_decay_and_head_rate(schedule, first_rate):
    model = tiny_classifier()
    optimizer = build(
        model,
        schedule=schedule,
        layerwise_lr_decay=DECAY,
        head_learning_rate=HEAD_LR,
        weight_decay=0.0,
        clipnorm=None,
    )
    sizes = step_sizes(model, optimizer)
    # Adam's first step moves every weight by lr (the gradient's sign times lr).
    expected = {"embeddings": DECAY ** (NUM_LAYERS + 1), "pooler": 1.0, "head": HEAD_LR / LR}
    expected.update({f"layer_{i}": DECAY ** (NUM_LAYERS - i) for i in range(NUM_LAYERS)})
    for group in group_names(NUM_LAYERS):
        assert sizes[group] == pytest.approx(first_rate * expected[group], rel=1e-3), group
    ordered = [sizes[group] for group in group_names(NUM_LAYERS)]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)


def test_weight_decay_follows_the_multiplier_and_skips_biases_and_layer_norm():
    model = tiny_classifier()
    optimizer = build(model, layerwise_lr_decay=DECAY, weight_decay=0.1, clipnorm=None)
    variables = model.trainable_variables
    before = snapshot(model)
    # A zero gradient leaves Adam's step at 0: any change is the decoupled weight decay.
    optimizer.apply([tf.zeros(v.shape) for v in variables], variables)
    after = snapshot(model)
    multipliers = optimizer.learning_rate_multipliers
    decayed = 0
    for variable in variables:
        old, new = before[variable.path], after[variable.path]
        if variable.name in ("bias", "gamma", "beta"):
            np.testing.assert_array_equal(new, old)
        else:
            factor = 1 - 0.1 * LR * multipliers[variable.path]
            np.testing.assert_allclose(new, old * factor, rtol=1e-6, atol=1e-9)
            decayed += 1
    assert decayed > NUM_LAYERS * 4


def test_gradient_accumulation_equals_one_step_on_the_mean_gradient():
    settings = {"layerwise_lr_decay": DECAY, "weight_decay": 0.01}
    accumulating, plain = tiny_classifier(seed=3), tiny_classifier(seed=3)
    x, y = tiny_batch()
    rng = np.random.default_rng(0)
    gradients = [
        [tf.constant(rng.normal(size=v.shape), "float32") for v in plain.trainable_variables]
        for _ in range(2)
    ]
    slow = build(accumulating, gradient_accumulation_steps=2, **settings)
    before = snapshot(accumulating)
    slow.apply(gradients[0], accumulating.trainable_variables)
    assert snapshot(accumulating).keys() == before.keys()
    for path, value in snapshot(accumulating).items():
        np.testing.assert_array_equal(value, before[path])  # the first micro-batch only adds up
    slow.apply(gradients[1], accumulating.trainable_variables)

    mean = [(a + b) / 2 for a, b in zip(*gradients, strict=True)]
    build(plain, **settings).apply(mean, plain.trainable_variables)
    expected = snapshot(plain)
    for path, value in snapshot(accumulating).items():
        np.testing.assert_allclose(value, expected[path], rtol=1e-5, atol=1e-7, err_msg=path)
    assert not np.array_equal(expected["logits/kernel"], before["logits/kernel"])


def test_global_clipnorm_uses_the_dense_embedding_gradient():
    model = tiny_classifier()
    optimizer = build(model, clipnorm=1.0)
    # Rows 0 and 0 again: the dense gradient is 2 * ones in row 0, norm 2 * sqrt(3).
    repeated = tf.IndexedSlices(tf.ones((2, 3)), tf.constant([0, 0]), tf.constant([4, 3]))
    (dense,) = gradients_for_clipping(optimizer, [repeated])
    # what Keras' global-norm clipping then sees: 3.46, not the rows' 2.45
    assert float(tf.norm(dense)) == pytest.approx(2 * 3**0.5, rel=1e-6)
    unclipped = build(model, clipnorm=None)
    assert gradients_for_clipping(unclipped, [repeated])[0] is repeated


def test_optimizer_trains_through_fit_and_round_trips_its_config():
    model = tiny_classifier()
    optimizer = build(model, layerwise_lr_decay=DECAY, head_learning_rate=HEAD_LR)
    model.compile(optimizer=optimizer, loss=bce(), run_eagerly=True)
    x, y = tiny_batch()
    first = model.train_on_batch(x, y)
    for _ in range(3):
        last = model.train_on_batch(x, y)
    assert last < first
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(clone) is type(optimizer)
    assert clone.learning_rate_multipliers == optimizer.learning_rate_multipliers


@pytest.mark.parametrize(
    "settings",
    [{}, {"use_ema": True, "gradient_accumulation_steps": 2, "clipnorm": None}],
    ids=["adamw", "ema+accumulation"],
)
def test_the_xla_compiled_update_moves_every_weight_as_the_plain_one(settings):
    """`training.jit_compile: optimizer` compiles the update alone with XLA: same AdamW (layer-
    wise rates, head rate, decay, global-norm clipping), so the same weights after three steps
    up to float rounding."""
    from tests.training.conftest import LossOnlyTask
    from xtune.training.task_model import TaskModel, TaskStep, step_plan

    x, y = tiny_batch()
    start, weights = snapshot(tiny_classifier(seed=0)), []
    for xla_update in (False, True):
        model = tiny_classifier(seed=0, model_class=TaskModel)
        model.plan = step_plan([LossOnlyTask(bce())], [model], [TaskStep(0)], xla_update=xla_update)
        optimizer = build(model, layerwise_lr_decay=DECAY, head_learning_rate=HEAD_LR, **settings)
        model.compile(optimizer=optimizer)
        model.optimizer.build(model.trainable_variables)
        step, data = tf.function(model.train_step), (tf.constant(0), ((x, tf.constant(y)),))
        for _ in range(4):
            step(data)
        assert compiles_with_xla(step.get_concrete_function(data).graph) == xla_update
        weights.append({**snapshot(model), **optimizer_state(model.optimizer)})
    plain, compiled = weights
    assert any(not np.allclose(plain[path], start[path]) for path in plain)  # they trained
    for path, value in plain.items():
        np.testing.assert_allclose(compiled[path], value, rtol=1e-5, atol=1e-6, err_msg=path)


def optimizer_state(optimizer) -> dict[str, np.ndarray]:
    """The optimizer's variables (moments, EMA, accumulators) by position."""
    return {f"optimizer/{i}": np.array(v) for i, v in enumerate(optimizer.variables)}


def compiles_with_xla(graph) -> bool:
    """Whether `graph` calls a function that must compile with XLA."""
    definition = graph.as_graph_def()
    nodes = [*definition.node, *(n for f in definition.library.function for n in f.node_def)]
    return any(node.attr["_XlaMustCompile"].b for node in nodes if "_XlaMustCompile" in node.attr)
