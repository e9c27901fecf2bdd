"""Softmax cross-entropy on logits for single-label (one class per example) classification."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.base import LOSSES
from xtune.losses.classification_loss import ClassificationLoss


def softmax_crossentropy(y_true: Any, logits: Any, label_smoothing: float = 0.0) -> Any:
    """Softmax cross-entropy from logits (one value per example).

    With `K` classes and `t = y * (1 - label_smoothing) + label_smoothing / K` (Keras'
    convention, Szegedy et al. 2016, https://arxiv.org/abs/1512.00567):

        loss = -sum_k t_k * log_softmax(x)_k

    This is `keras.losses.categorical_crossentropy(from_logits=True)`, run in float32.

    Args:
        y_true: `(batch, num_classes)` one-hot targets, exactly one 1 per row.
        logits: `(batch, num_classes)` raw scores.
        label_smoothing: in `[0, 1]`.

    Returns:
        `(batch,)` per-example loss.

    Example:

    >>> softmax_crossentropy([[1.0, 0.0, 0.0]], [[2.0, -1.0, 0.5]])
    [0.2413]   # -log(e^2 / (e^2 + e^-1 + e^0.5))
    """
    return keras.losses.categorical_crossentropy(
        ops.cast(y_true, "float32"),
        ops.cast(logits, "float32"),
        from_logits=True,
        label_smoothing=label_smoothing,
    )


@LOSSES.register("softmax_ce")
@keras.saving.register_keras_serializable(package="xtune")
class SoftmaxCrossentropy(ClassificationLoss):
    """Softmax cross-entropy on logits; see `softmax_crossentropy`.

    Single-label: scores are `softmax(logits)` and the prediction is the top-1 class, so
    `default_threshold` is None and `decide()` takes no thresholds.

    Args:
        label_smoothing: in `[0, 1]`, default 0.
    """

    multi_label = False
    default_threshold = None

    def scores(self, logits: Any) -> Any:
        return ops.softmax(ops.cast(logits, "float32"), axis=-1)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return softmax_crossentropy(y_true, y_pred, self.label_smoothing)
