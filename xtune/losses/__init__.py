"""Classification losses, chosen by short name (`get_loss("bce")`), and their registry."""

from __future__ import annotations

from typing import Any

from xtune.registry import Registry

LOSSES = Registry("loss")

# These modules register themselves into LOSSES, so they are imported once it exists.
# Only the classes are re-exported: each plain function shares its module's name
# (`xtune.losses.focal_crossentropy.focal_crossentropy`) and would shadow the module.
from xtune.losses.binary_crossentropy import BinaryCrossentropy  # noqa: E402
from xtune.losses.classification_loss import ClassificationLoss  # noqa: E402
from xtune.losses.focal_crossentropy import FocalCrossentropy  # noqa: E402
from xtune.losses.multilabel_categorical_crossentropy import (  # noqa: E402
    MultilabelCategoricalCrossentropy,
)
from xtune.losses.softmax_crossentropy import SoftmaxCrossentropy  # noqa: E402


def get_loss(spec: str | dict[str, Any] | ClassificationLoss) -> ClassificationLoss:
    """Build a loss from a short name, a `{"name": ..., **kwargs}` dict, or pass one through.

    >>> get_loss({"name": "focal", "gamma": 2.0, "alpha": 0.25})
    <FocalCrossentropy ...>
    """
    if isinstance(spec, ClassificationLoss):
        return spec
    return LOSSES.build(spec)


__all__ = [
    "LOSSES",
    "BinaryCrossentropy",
    "ClassificationLoss",
    "FocalCrossentropy",
    "MultilabelCategoricalCrossentropy",
    "SoftmaxCrossentropy",
    "get_loss",
]
