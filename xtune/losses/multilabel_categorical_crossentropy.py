"""Multi-label categorical cross-entropy ("concurrent softmax", Su Jianlin / ZLPR) on logits."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.base import LOSSES
from xtune.losses.classification_loss import ClassificationLoss


def _log_one_plus_sum_exp(terms: Any, keep: Any) -> Any:
    """`log(1 + sum_{i: keep_i} exp(terms_i))` over the last axis, stable for any magnitude."""
    masked = ops.where(keep, terms, float("-inf"))
    zeros = ops.zeros_like(terms[..., :1])  # the "1" inside the log, as exp(0)
    return ops.logsumexp(ops.concatenate([zeros, masked], axis=-1), axis=-1)


def multilabel_categorical_crossentropy(
    y_true: Any,
    logits: Any,
    label_smoothing: float = 0.0,
) -> Any:
    """Multi-label categorical cross-entropy from logits (one value per example).

    For hard targets, with `s` the logits (Su 2020):

        loss = log(1 + sum_{i in neg} e^{s_i}) + log(1 + sum_{j in pos} e^{-s_j})

    It asks every positive logit to be above 0 and every negative one below 0, like softmax
    cross-entropy with an extra class fixed at logit 0, so predict `logit > 0`. Positives and
    negatives each get one log-sum-exp, so (Su argues) many easy negatives do not outweigh
    the few positives the way they do in a sum of per-label BCE terms.

    Label smoothing uses Su's soft-label version (ZLPR, 2022), with the same smoothed
    targets `t = y * (1 - label_smoothing) + label_smoothing / 2` as the sigmoid losses:

        loss = log(1 + sum_i t_i e^{-s_i}) + log(1 + sum_i (1 - t_i) e^{s_i})

    For `t` in {0, 1} this is the hard loss exactly (the code drops the `t_i = 0` and
    `1 - t_i = 0` terms rather than clipping `t`, so `label_smoothing=0` gives bit-for-bit the
    hard value). Its minimum is at `sigmoid(2 * s_i) = t_i`, so logit 0 still means 0.5.
    Each part is a log-sum-exp over `[0, -s_i + log(t_i)]` (resp. `[0, s_i + log(1 - t_i)]`),
    finite with finite gradients for logits of +-1e4.

    References:
        Su Jianlin, "将Softmax+交叉熵推广到多标签分类问题", https://kexue.fm/archives/7359
        Su Jianlin, "多标签Softmax+交叉熵的软标签版本", https://kexue.fm/archives/9064
        Su et al., "ZLPR: A Novel Loss for Multi-label Classification",
        https://arxiv.org/abs/2208.02955

    Args:
        y_true: `(batch, num_labels)` multi-hot (or soft, in [0, 1]) targets.
        logits: `(batch, num_labels)` raw scores; math runs in float32.
        label_smoothing: in `[0, 1]`.

    Returns:
        `(batch,)` per-example loss. It is a sum over labels, not a mean: that is the loss.

    Example:

    >>> multilabel_categorical_crossentropy([[1.0, 0.0, 0.0]], [[2.0, -1.0, 0.5]])
    [1.2311]   # log(1 + e^-1 + e^0.5) + log(1 + e^-2) = 1.1041 + 0.1269
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(y_true, "float32") * (1.0 - label_smoothing) + 0.5 * label_smoothing
    # log(t) is only used where t > 0 (and log(1 - t) where t < 1); the floor keeps the
    # unused branch of `where` finite.
    tiny = 1e-30
    positive_part = _log_one_plus_sum_exp(
        -logits + ops.log(ops.maximum(targets, tiny)), keep=targets > 0.0
    )
    negative_part = _log_one_plus_sum_exp(
        logits + ops.log(ops.maximum(1.0 - targets, tiny)), keep=targets < 1.0
    )
    return positive_part + negative_part


@LOSSES.register("multilabel_ce")
@keras.saving.register_keras_serializable(package="xtune")
class MultilabelCategoricalCrossentropy(ClassificationLoss):
    """Multi-label categorical cross-entropy on logits; see the function of the same name.

    The decision rule is `logit > 0`. Scores are `sigmoid(logits)`, so the default
    threshold 0.5 is exactly that rule and tuned thresholds live on the same scale as the
    sigmoid losses. (ZLPR's calibrated probability is `sigmoid(2 * logit)`; it ranks
    examples identically and also crosses 0.5 at logit 0, so only tuned values differ.)

    Args:
        label_smoothing: in `[0, 1]`, default 0.
    """

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return multilabel_categorical_crossentropy(y_true, y_pred, self.label_smoothing)
