"""Sentence-BERT's CosineSimilarityLoss: squared error between cos(u, v) and the scaled label."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.losses.base import SCORE_LOSSES
from xtune.losses.score_loss import ScoreLoss, flat_float32


@SCORE_LOSSES.register("cosine")
@keras.saving.register_keras_serializable(package="xtune")
class CosineSimilarityLoss(ScoreLoss):
    """Squared error between the cosine of two sentence embeddings and the label in `[0, 1]`.

        loss = mean_i (cos_i - (y_i - low) / (high - low))**2

    The label is scaled to `[0, 1]`, not to `[-1, 1]`: that is what Sentence-BERT does for
    STS (`score / 5`, Reimers & Gurevych 2019, sentence-transformers `CosineSimilarityLoss`),
    so an unrelated pair is pushed to orthogonal embeddings rather than to opposite ones.

    `scores(cos) = low + cos * (high - low)` is the exact inverse of that scaling, so a model
    that has learned the targets returns the label itself. It is linear (Pearson and Spearman
    are those of the raw cosines) and is deliberately not clipped, which would tie every pair
    with a negative cosine; such pairs score below `low`.

    Reference: Reimers, Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese
    BERT-Networks", EMNLP 2019, https://arxiv.org/abs/1908.10084

    Args:
        low, high: the label range (default 0 and 5).

    >>> CosineSimilarityLoss()([5.0, 0.0], [0.8, 0.1])   # ((0.8-1)**2 + (0.1-0)**2) / 2
    0.025
    """

    model_output = "cosine"

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return ops.square(flat_float32(y_pred) - self.scale_to_unit(y_true))

    def scores(self, outputs: Any) -> Any:
        return self.low + flat_float32(outputs) * (self.high - self.low)
