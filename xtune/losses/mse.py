"""Mean squared error on a bounded score in label units (STS regression with a cross-encoder)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.base import SCORE_LOSSES
from xtune.losses.score_loss import ScoreLoss, flat_float32


def bounded_score(logits: Any, low: float = 0.0, high: float = 5.0) -> Any:
    """A raw model output -> a score in `(low, high)`: `low + sigmoid(logits) * (high - low)`.

    The output layer an `mse` model should end with, so that its scores can never leave the
    label range (float32).

    >>> bounded_score([0.0, 2.0], 0.0, 5.0)
    [2.5, 4.4040]
    """
    return low + ops.sigmoid(ops.cast(logits, "float32")) * (high - low)


def mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    """`(y_pred - y_true)**2` per example, `[b]`, in float32; the loss averages it over the batch.

    >>> mean_squared_error([1.0, 4.0], [1.5, 2.0])
    [0.25, 4.0]
    """
    return ops.square(flat_float32(y_pred) - flat_float32(y_true))


@SCORE_LOSSES.register("mse")
@keras.saving.register_keras_serializable(package="xtune")
class MeanSquaredError(ScoreLoss):
    """Squared error between the model's score and the gold score, both in label units.

    `y_pred` should already be bounded to the label range (see `bounded_score`), so
    `scores(outputs)` is the identity.

    Args:
        low, high: the label range (default 0 and 5).
    """

    model_output = "score"

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return mean_squared_error(y_true, y_pred)
