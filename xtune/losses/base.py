"""The loss registries, `LOSSES` and `SCORE_LOSSES`, and the builders that read them."""

from __future__ import annotations

from typing import Any

from xtune.losses.classification_loss import ClassificationLoss
from xtune.losses.score_loss import ScoreLoss
from xtune.registry import Registry

LOSSES = Registry("loss")
# Regression on one score per example (STS 0-5): a separate family with its own contract,
# `ScoreLoss` (gold scores in, scores in label units out) instead of a decision rule.
SCORE_LOSSES = Registry("score loss")


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
