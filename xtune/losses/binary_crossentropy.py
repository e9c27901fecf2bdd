"""Sigmoid binary cross-entropy on logits, with label smoothing and per-label positive weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from xtune.losses.base import LOSSES
from xtune.losses.checks import check_binary_crossentropy
from xtune.losses.classification_loss import ClassificationLoss


def binary_crossentropy(
    y_true: Any,
    logits: Any,
    label_smoothing: float = 0.0,
    pos_weight: Sequence[float] | None = None,
) -> Any:
    """Sigmoid binary cross-entropy from logits, averaged over labels.

    With `t = y * (1 - label_smoothing) + label_smoothing / 2` and `w` the positive weight
    of each label (1 when `pos_weight` is None):

        loss = mean_i[ -w_i * t_i * log(sigmoid(x_i)) - (1 - t_i) * log(sigmoid(-x_i)) ]

    computed with `log_sigmoid`, so it is exact and finite for any finite logit. `w_i > 1`
    weights the positives of label `i` up, as `pos_weight` in PyTorch's `BCEWithLogitsLoss`
    and `tf.nn.weighted_cross_entropy_with_logits`. Math runs in float32 whatever the dtype
    of `logits`.

    Args:
        y_true: `(batch, num_labels)` multi-hot targets.
        logits: `(batch, num_labels)` raw scores.
        label_smoothing: in `[0, 1]`; squeezes both targets towards 0.5, as Keras does.
        pos_weight: one weight per label for the positive term, or None.

    Returns:
        `(batch,)` per-example loss: the mean over labels.

    Example:

    >>> binary_crossentropy([[1.0, 0.0]], [[2.0, -1.0]])
    [0.2201]   # (log(1 + e^-2) + log(1 + e^-1)) / 2 = (0.1269 + 0.3133) / 2
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(y_true, "float32") * (1.0 - label_smoothing) + 0.5 * label_smoothing
    positive_term = targets * ops.log_sigmoid(logits)
    if pos_weight is not None:
        positive_term = ops.convert_to_tensor(pos_weight, "float32") * positive_term
    negative_term = (1.0 - targets) * ops.log_sigmoid(-logits)
    return -ops.mean(positive_term + negative_term, axis=-1)


@LOSSES.register("bce")
@keras.saving.register_keras_serializable(package="xtune")
class BinaryCrossentropy(ClassificationLoss):
    """Sigmoid binary cross-entropy on logits; see `binary_crossentropy`.

    Scores are `sigmoid(logits)`; a label is predicted when its score is above 0.5.

    Args:
        label_smoothing: in `[0, 1]`, default 0.
        pos_weight: list with one positive-term weight per label, or None (default).
    """

    check_arguments = staticmethod(check_binary_crossentropy)

    def __init__(
        self,
        label_smoothing: float = 0.0,
        pos_weight: Sequence[float] | None = None,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ):
        BinaryCrossentropy.check_arguments(pos_weight)
        super().__init__(
            label_smoothing=label_smoothing, name=name, reduction=reduction, dtype=dtype
        )
        # A plain list keeps get_config() JSON-serializable.
        self.pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        num_labels = y_pred.shape[-1]
        if self.pos_weight is not None and num_labels is not None:
            if len(self.pos_weight) != num_labels:
                raise ValueError(
                    f"pos_weight has {len(self.pos_weight)} entries but the model has "
                    f"{num_labels} labels; give one weight per label"
                )
        return binary_crossentropy(y_true, y_pred, self.label_smoothing, self.pos_weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pos_weight": self.pos_weight}
