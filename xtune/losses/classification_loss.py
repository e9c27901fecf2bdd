"""The contract every xtune loss follows: a loss, plus how its logits become scores and labels."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.checks import check_classification_loss


class ClassificationLoss(keras.losses.Loss):
    """Base class for classification losses that take logits.

    Metrics, threshold tuning and the exported SavedModel never look at the loss itself,
    only at these three things, so a new loss only has to say how to read its logits:

    - `scores(logits)`: per-label scores in `[0, 1]` (sigmoid unless a subclass says otherwise).
    - `default_threshold`: the cut on scores that matches the loss's own decision rule
      (0.5 for sigmoid scores, i.e. logit > 0), or `None` for the top-1 rule.
    - `decide(scores, thresholds=None)`: int32 0/1 predictions, built from `keras.ops` only,
      so it also runs inside a `tf.function` or an exported SavedModel.

    `multi_label` is False for single-label losses (exactly one label per example).
    Every xtune loss also takes `label_smoothing` in `[0, 1]`; each subclass documents how.

    Example (a sigmoid-family loss):

    >>> loss = BinaryCrossentropy()
    >>> scores = loss.scores([[2.0, -1.0, 0.3]])        # [[0.881, 0.269, 0.574]]
    >>> loss.decide(scores)                             # [[1, 0, 1]]
    >>> loss.decide(scores, thresholds=[0.9, 0.1, 0.9])  # [[0, 1, 0]]
    """

    multi_label: bool = True
    default_threshold: float | None = 0.5

    # Raises `ValueError` for arguments invalid by meaning (the config calls it for every run
    # before training); a subclass's checks its own arguments, then these.
    check_arguments = staticmethod(check_classification_loss)

    def __init__(
        self,
        label_smoothing: float = 0.0,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ):
        ClassificationLoss.check_arguments(label_smoothing)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}

    def scores(self, logits: Any) -> Any:
        """Per-label scores in `[0, 1]`, computed in float32."""
        return ops.sigmoid(ops.cast(logits, "float32"))

    def decide(self, scores: Any, thresholds: Any = None) -> Any:
        """0/1 predictions (int32) from `scores`.

        Args:
            scores: `(..., num_labels)` output of `scores()`.
            thresholds: a scalar or a `(num_labels,)` vector; a label is predicted when its
                score is strictly above its threshold. Defaults to `default_threshold`.
                Must be None for the top-1 rule, which predicts the one-hot argmax.
        """
        scores = ops.cast(scores, "float32")
        if self.default_threshold is None:
            if thresholds is not None:
                raise ValueError(
                    f"{type(self).__name__} predicts the top-1 label and takes no thresholds; "
                    f"got thresholds={thresholds!r}"
                )
            num_labels = ops.shape(scores)[-1]
            return ops.one_hot(ops.argmax(scores, axis=-1), num_labels, dtype="int32")
        if thresholds is None:
            thresholds = self.default_threshold
        return ops.cast(scores > ops.cast(thresholds, "float32"), "int32")
