"""The losses' arguments checked by meaning, without Keras.

Each loss's `check_arguments` is one of these functions (a subclass's checks its own
arguments, then its base's), so the config (through the component catalog) and the
constructors refuse alike. Each raises `ValueError("ARGUMENT: ...")`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xtune.registry import check_number


def check_classification_loss(label_smoothing: float = 0.0, **kwargs: Any) -> None:
    """What every classification loss takes (`ClassificationLoss`)."""
    check_number("label_smoothing", label_smoothing, 0.0, 1.0)


def check_binary_crossentropy(pos_weight: Sequence[float] | None = None, **kwargs: Any) -> None:
    if pos_weight is not None:
        if not isinstance(pos_weight, list | tuple) or not pos_weight:
            raise ValueError(
                f"pos_weight: expected a list of one weight per label, got {pos_weight!r}"
            )
        for weight in pos_weight:
            check_number("pos_weight", weight, 0.0, open_low=True)
    check_classification_loss(**kwargs)


def check_focal_crossentropy(alpha: float | None = None, gamma: float = 2.0, **kwargs: Any) -> None:
    if alpha is not None:
        check_number("alpha", alpha, 0.0, 1.0)
    check_number("gamma", gamma, 0.0, 100.0)
    check_classification_loss(**kwargs)


def check_per_level_crossentropy(
    level_weights: Sequence[float] | None = None, **kwargs: Any
) -> None:
    for weight in level_weights or []:
        check_number("level_weights", weight, 0.0, open_low=True)
    check_classification_loss(**kwargs)


def check_score_loss(low: float = 0.0, high: float = 5.0, **kwargs: Any) -> None:
    """What every score loss takes (`ScoreLoss`): the label range."""
    check_number("low", low)
    check_number("high", high)
    if not low < high:
        raise ValueError(f"low, high: expected low < high, got low={low!r}, high={high!r}")


def check_cosent(scale: float = 20.0, **kwargs: Any) -> None:
    check_number("scale", scale, 0.0, 1000.0, open_low=True)
    check_score_loss(**kwargs)
