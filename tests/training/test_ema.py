"""EMA: evaluation sees the moving average of the weights; training resumes on its own values."""

from __future__ import annotations

import keras
import numpy as np

from tests.training.conftest import bce, snapshot, tiny_batch, tiny_classifier
from xtune.training.ema import ema_weights
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.schedules import SCHEDULES

MOMENTUM = 0.5


def test_ema_weights_are_swapped_in_and_back():
    model = tiny_classifier()
    optimizer = OPTIMIZERS.build(
        {"name": "adamw", "learning_rate": 1e-2, "use_ema": True, "ema_momentum": MOMENTUM}
    )(model, SCHEDULES.build("constant"), 10)
    model.compile(optimizer=optimizer, loss=bce(), run_eagerly=True)
    x, y = tiny_batch()
    average = None
    for _ in range(3):
        model.train_on_batch(x, y)
        now = snapshot(model)
        average = (
            now
            if average is None  # Keras starts the average at the first step's weights
            else {p: MOMENTUM * average[p] + (1 - MOMENTUM) * now[p] for p in now}
        )
    training_values = snapshot(model)
    with ema_weights(model) as swapped:
        assert swapped
        inside = snapshot(model)
        averaged_predictions = model(x, training=False)
    for variable in model.trainable_weights:
        np.testing.assert_allclose(inside[variable.path], average[variable.path], rtol=1e-5)
        assert not np.array_equal(inside[variable.path], training_values[variable.path])
    for path, value in snapshot(model).items():
        np.testing.assert_array_equal(value, training_values[path])
    assert not np.allclose(averaged_predictions, model(x, training=False))


def test_without_ema_nothing_is_swapped():
    model = tiny_classifier()
    model.compile(optimizer=keras.optimizers.Adam(), loss=bce())
    with ema_weights(model) as swapped:
        assert not swapped
