"""Classification losses (`get_loss("bce")`) and score losses (`get_score_loss("cosent")`),
chosen by short name; the registries live in `xtune.losses.base`."""

# Importing these modules registers each loss into LOSSES or SCORE_LOSSES.
# Only the classes are re-exported: each plain function shares its module's name
# (`xtune.losses.focal_crossentropy.focal_crossentropy`) and would shadow the module.
from xtune.losses.base import LOSSES, SCORE_LOSSES, get_loss, get_score_loss
from xtune.losses.binary_crossentropy import BinaryCrossentropy
from xtune.losses.classification_loss import ClassificationLoss
from xtune.losses.cosent import CoSENTLoss
from xtune.losses.cosine_similarity import CosineSimilarityLoss
from xtune.losses.focal_crossentropy import FocalCrossentropy
from xtune.losses.mse import MeanSquaredError
from xtune.losses.multilabel_categorical_crossentropy import MultilabelCategoricalCrossentropy
from xtune.losses.score_loss import ScoreLoss
from xtune.losses.softmax_crossentropy import SoftmaxCrossentropy

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
