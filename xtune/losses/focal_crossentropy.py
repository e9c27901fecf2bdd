"""Sigmoid focal loss (Lin et al. 2017) on logits, with label smoothing done as an expectation."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.base import LOSSES
from xtune.losses.checks import check_focal_crossentropy
from xtune.losses.classification_loss import ClassificationLoss


def focal_crossentropy(
    y_true: Any,
    logits: Any,
    alpha: float | None = None,
    gamma: float = 2.0,
    label_smoothing: float = 0.0,
) -> Any:
    """Sigmoid focal loss from logits, averaged over labels.

    The paper's loss for one label with hard target `y` and `p = sigmoid(x)` is

        FL = -alpha_t * (1 - p_t)**gamma * log(p_t)
        p_t = p if y == 1 else 1 - p;   alpha_t = alpha if y == 1 else 1 - alpha

    (`alpha=None` means `alpha_t = 1`, no class balancing). Label smoothing is not in the
    paper; here the smoothed target `t = y * (1 - label_smoothing) + label_smoothing / 2`
    is read as the probability that the label is positive, and the loss is the expected FL:

        loss = mean_i[ -t * alpha   * (1 - p)**gamma * log(p)
                       -(1 - t) * (1 - alpha) * p**gamma * log(1 - p) ]

    This equals the paper exactly for `t` in {0, 1}, is linear in `t` (as cross-entropy with
    soft targets is), and with `gamma=0, alpha=None` is exactly `binary_crossentropy`.
    Common wrong copies compute `p_t = exp(-bce)` with smoothed targets, which is
    `p**t * (1 - p)**(1 - t)` and not a probability of the true class, or multiply every
    label by `alpha` instead of `alpha` / `1 - alpha`.

    `keras.losses.binary_focal_crossentropy` matches this for hard targets (and averages over
    labels too), but it smooths the targets *before* forming `p_t` and the weight
    (`p_t = t*p + (1-t)*(1-p)`, `alpha_t = t*alpha + (1-t)*(1-alpha)`, times `bce(t, p)`),
    and it forms `(1 - p_t)**gamma` from saturated probabilities, which gives NaN gradients
    for `gamma < 1` once `|logit|` is large (about 17 and up). So it is not called here; the
    tests check both agree on hard targets. Every factor here is built from `log_sigmoid`
    (`(1 - p)**gamma = exp(gamma * log_sigmoid(-x))`), so loss and gradient stay finite.

    Reference: Lin, Goyal, Girshick, He, Dollar, "Focal Loss for Dense Object Detection",
    ICCV 2017, https://arxiv.org/abs/1708.02002 (they use alpha=0.25, gamma=2).

    Args:
        y_true: `(batch, num_labels)` multi-hot targets.
        logits: `(batch, num_labels)` raw scores; math runs in float32.
        alpha: weight of the positive term (negatives get `1 - alpha`), or None.
        gamma: focusing parameter, >= 0.
        label_smoothing: in `[0, 1]`.

    Returns:
        `(batch,)` per-example loss: the mean over labels.

    Example:

    >>> focal_crossentropy([[1.0, 0.0]], [[2.0, -1.0]], alpha=0.25, gamma=2.0)
    [0.0087]   # (0.25 * 0.1192**2 * 0.1269 + 0.75 * 0.2689**2 * 0.3133) / 2
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(y_true, "float32") * (1.0 - label_smoothing) + 0.5 * label_smoothing
    log_p = ops.log_sigmoid(logits)
    log_not_p = ops.log_sigmoid(-logits)
    positive_term = targets * ops.exp(gamma * log_not_p) * log_p
    negative_term = (1.0 - targets) * ops.exp(gamma * log_p) * log_not_p
    if alpha is not None:
        positive_term = alpha * positive_term
        negative_term = (1.0 - alpha) * negative_term
    return -ops.mean(positive_term + negative_term, axis=-1)


@LOSSES.register("focal")
@keras.saving.register_keras_serializable(package="xtune")
class FocalCrossentropy(ClassificationLoss):
    """Sigmoid focal loss on logits; see `focal_crossentropy`.

    Scores are `sigmoid(logits)`; a label is predicted when its score is above 0.5.

    Args:
        alpha: None (default, no class balancing, as Keras' default) or a float in [0, 1];
            the paper pairs `alpha=0.25` with `gamma=2`.
        gamma: focusing parameter, default 2.0.
        label_smoothing: in `[0, 1]`, default 0.
    """

    check_arguments = staticmethod(check_focal_crossentropy)

    def __init__(
        self,
        alpha: float | None = None,
        gamma: float = 2.0,
        label_smoothing: float = 0.0,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ):
        FocalCrossentropy.check_arguments(alpha, gamma)
        super().__init__(
            label_smoothing=label_smoothing, name=name, reduction=reduction, dtype=dtype
        )
        self.alpha = None if alpha is None else float(alpha)
        self.gamma = float(gamma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return focal_crossentropy(y_true, y_pred, self.alpha, self.gamma, self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}
