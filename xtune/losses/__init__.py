"""Classification losses (`get_loss("bce")`) and score losses (`get_score_loss("cosent")`),
chosen by short name, and their registries."""

from __future__ import annotations

from typing import Any

from xtune.registry import Registry

LOSSES = Registry("loss")
# Regression on one score per example (STS 0-5): a separate family with its own contract,
# `ScoreLoss` (gold scores in, scores in label units out) instead of a decision rule.
SCORE_LOSSES = Registry("score loss")

# These modules register themselves into LOSSES or SCORE_LOSSES, so they are imported once
# both exist.
# Only the classes are re-exported: each plain function shares its module's name
# (`xtune.losses.focal_crossentropy.focal_crossentropy`) and would shadow the module.
from xtune.losses.binary_crossentropy import BinaryCrossentropy  # noqa: E402
from xtune.losses.classification_loss import ClassificationLoss  # noqa: E402
from xtune.losses.cosent import CoSENTLoss  # noqa: E402
from xtune.losses.cosine_similarity import CosineSimilarityLoss  # noqa: E402
from xtune.losses.focal_crossentropy import FocalCrossentropy  # noqa: E402
from xtune.losses.mse import MeanSquaredError  # noqa: E402
from xtune.losses.multilabel_categorical_crossentropy import (  # noqa: E402
    MultilabelCategoricalCrossentropy,
)
from xtune.losses.score_loss import ScoreLoss  # noqa: E402
from xtune.losses.softmax_crossentropy import SoftmaxCrossentropy  # noqa: E402


def get_loss(spec: str | dict[str, Any] | ClassificationLoss) -> ClassificationLoss:
    """Build a loss from a short name, a `{"name": ..., **kwargs}` dict, or pass one through.

    >>> get_loss({"name": "focal", "gamma": 2.0, "alpha": 0.25})
    <FocalCrossentropy ...>
    """
    if isinstance(spec, ClassificationLoss):
        return spec
    return LOSSES.build(spec)


def get_score_loss(spec: str | dict[str, Any] | ScoreLoss) -> ScoreLoss:
    """Build a score loss from a short name, a `{"name": ..., **kwargs}` dict, or pass one
    through.

    >>> get_score_loss({"name": "cosent", "scale": 20.0, "low": 0, "high": 5})
    <CoSENTLoss ...>
    """
    if isinstance(spec, ScoreLoss):
        return spec
    return SCORE_LOSSES.build(spec)


__all__ = [
    "LOSSES",
    "SCORE_LOSSES",
    "BinaryCrossentropy",
    "ClassificationLoss",
    "CoSENTLoss",
    "CosineSimilarityLoss",
    "FocalCrossentropy",
    "MeanSquaredError",
    "MultilabelCategoricalCrossentropy",
    "ScoreLoss",
    "SoftmaxCrossentropy",
    "get_loss",
    "get_score_loss",
]
