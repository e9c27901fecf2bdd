"""Evaluate on the optimizer's exponential moving average of the weights (`use_ema`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np


def base_optimizer(optimizer: Any) -> Any:
    """The optimizer itself, or the one inside a mixed-float16 `LossScaleOptimizer`."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def uses_ema(model: keras.Model) -> bool:
    optimizer = base_optimizer(getattr(model, "optimizer", None))
    return bool(optimizer is not None and optimizer.use_ema and optimizer.built)


@contextlib.contextmanager
def ema_weights(model: keras.Model) -> Iterator[bool]:
    """Inside the block the trainable weights hold their moving averages; afterwards their
    training values again, bitwise. Yields whether a swap happened (False without EMA).

    Keras keeps the averages in the optimizer and copies them into the model with
    `finalize_variable_values`, which `fit` calls once at the very end of training; this
    does the same copy for the duration of a per-epoch evaluation.
    """
    if not uses_ema(model):
        yield False
        return
    optimizer = base_optimizer(model.optimizer)
    # The weights the optimizer was built on: the trainable set does not change within a stage.
    variables = list(model.trainable_variables)
    training_values = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield True
    finally:
        for variable, value in zip(variables, training_values, strict=True):
            variable.assign(value)
