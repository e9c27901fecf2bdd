"""Classification losses (`get_loss("bce")`) and score losses (`get_score_loss("cosent")`),
chosen by short name; the registries live in `xtune.losses.base`.

Importing the package loads no Keras, so `xtune.losses.checks` checks a loss's arguments
for the config on its own. The losses, and the registries filled with them, load on first
use of a name below (PEP 562 `__getattr__`, as `xtune` loads its API).
"""

from typing import Any

from xtune.lazy_exports import bind_exports

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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Importing these modules registers each loss into LOSSES or SCORE_LOSSES. Only the
    # classes are exported: each plain function shares its module's name
    # (`xtune.losses.focal_crossentropy.focal_crossentropy`) and would shadow the module.
    from xtune.losses import (  # noqa: F401
        base,
        binary_crossentropy,
        classification_loss,
        cosent,
        cosine_similarity,
        focal_crossentropy,
        mse,
        multilabel_categorical_crossentropy,
        score_loss,
        softmax_crossentropy,
    )

    return bind_exports(globals(), __all__, name, locals().values())
