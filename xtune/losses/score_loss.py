"""The contract every xtune score (regression) loss follows: gold scores in label units in,
one loss out, and how the model's output reads back as a score in label units."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.checks import check_score_loss


class ScoreLoss(keras.losses.Loss):
    """Base class for losses on one real-valued score per example (e.g. STS, 0 to 5).

    - `y_true`: `[b]` gold scores in label units, in `[low, high]`.
    - `y_pred`: `[b]` the model's score output; what it is depends on `model_output`:
      `"score"` (a bounded score already in label units, e.g. `bounded_score(logit)`) or
      `"cosine"` (the cosine similarity of two sentence embeddings, in `[-1, 1]`).
    - `scores(outputs)`: the model outputs mapped to label units, for metrics and export;
      each loss documents its mapping. Pearson/Spearman only need it to be increasing.

    `[b, 1]` inputs are accepted too (flattened). The math runs in float32 whatever the
    compute dtype, so a mixed-precision model gets a float32 loss.

    Args:
        low, high: the label range, `low < high` (default 0 and 5, the STS range).
    """

    model_output: str = "score"

    # Raises `ValueError` for arguments invalid by meaning (the config calls it for every run
    # before training); a subclass's checks its own arguments, then these.
    check_arguments = staticmethod(check_score_loss)

    def __init__(
        self,
        low: float = 0.0,
        high: float = 5.0,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ):
        ScoreLoss.check_arguments(low, high)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.low = float(low)
        self.high = float(high)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high}

    def scores(self, outputs: Any) -> Any:
        """Predictions in label units (float32); the base class's outputs already are."""
        return flat_float32(outputs)

    def scale_to_unit(self, labels: Any) -> Any:
        """Labels in `[low, high]` -> `[0, 1]`: `(y - low) / (high - low)`."""
        return (flat_float32(labels) - self.low) / (self.high - self.low)


def flat_float32(values: Any) -> Any:
    """`[b]` or `[b, 1]` -> a float32 `[b]` vector."""
    return ops.reshape(ops.cast(values, "float32"), (-1,))
