"""CoSENT (Su Jianlin, 2022): a ranking loss on cosine similarities over all pairs of a batch."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.base import SCORE_LOSSES
from xtune.losses.checks import check_cosent
from xtune.losses.score_loss import ScoreLoss, flat_float32

# Added to the pair differences of unordered pairs: exp(-1e12 + anything finite) is 0.
EXCLUDED = 1e12


def cosent(y_true: Any, cosines: Any, scale: float = 20.0) -> Any:
    """The CoSENT loss of one batch (a scalar, float32).

        loss = log(1 + sum over pairs (i, j) with y_i > y_j of exp(scale * (cos_j - cos_i)))

    Every pair whose gold scores are ordered should have its cosines ordered the same way;
    a pair with equal gold scores (a tie) adds nothing. A batch with no ordered pair has loss
    log(1) = 0. Only the order of the labels matters, so 0/1 paraphrase labels work as they
    are. Computed as `logsumexp([0, scale * (cos_j - cos_i) for all i, j])` with unordered
    pairs pushed to -1e12, so it never overflows (as sentence-transformers' `CoSENTLoss`).

    Reference: Su Jianlin, "CoSENT (1): a more effective sentence-vector scheme than
    Sentence-BERT", 2022, https://kexue.fm/archives/8847

    Args:
        y_true: `[b]` gold scores (any units; only their order is used).
        cosines: `[b]` cos(u, v) of each pair.
        scale: lambda, the inverse temperature (default 20, as in the paper).

    >>> cosent([1.0, 0.0], [0.2, 0.4], scale=20.0)   # log(1 + exp(20 * 0.2))
    4.0181
    """
    labels = flat_float32(y_true)
    cosines = flat_float32(cosines)
    # differences[i, j] = scale * (cos_j - cos_i), kept where y_i > y_j.
    differences = scale * (cosines[None, :] - cosines[:, None])
    ordered = labels[:, None] > labels[None, :]
    differences = differences - (1.0 - ops.cast(ordered, "float32")) * EXCLUDED
    return ops.logsumexp(ops.concatenate([ops.zeros((1,)), ops.reshape(differences, (-1,))]))


@SCORE_LOSSES.register("cosent")
@keras.saving.register_keras_serializable(package="xtune")
class CoSENTLoss(ScoreLoss):
    """CoSENT on the cosines of a bi-encoder; see `cosent`.

    A batch-level loss: `call` returns one scalar for the whole batch, so per-example sample
    weights have no meaning for it; pass none.

    CoSENT only learns an order, so cosines are not calibrated label estimates.
    `scores(cos) = low + (cos + 1) / 2 * (high - low)` maps `[-1, 1]` linearly onto the label
    range: increasing, so Pearson and Spearman are those of the raw cosines; a squared error
    on these scores is not meaningful.

    Args:
        scale: lambda, > 0 (default 20).
        low, high: the label range (default 0 and 5), used by `scores` only.
    """

    model_output = "cosine"

    check_arguments = staticmethod(check_cosent)

    def __init__(
        self,
        scale: float = 20.0,
        low: float = 0.0,
        high: float = 5.0,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ):
        CoSENTLoss.check_arguments(scale)
        super().__init__(low=low, high=high, name=name, reduction=reduction, dtype=dtype)
        self.scale = float(scale)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return cosent(y_true, y_pred, self.scale)

    def scores(self, outputs: Any) -> Any:
        return self.low + (flat_float32(outputs) + 1.0) / 2.0 * (self.high - self.low)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}
