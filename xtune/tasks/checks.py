"""What each task type accepts in its config, checked without TensorFlow.

Each task class inherits its type's rules class from here (`ClassificationTask` from
`ClassificationRules`, ...), the one that sets `type_name`; the config reaches the same class
through the component catalog. `check_hierarchy` checks a task's hierarchy settings. Each
check raises `ValueError("key: problem")`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from xtune.heads.checks import pair_parts
from xtune.metric_directions import (
    HIERARCHY_METRIC_DIRECTIONS,
    METRIC_DIRECTIONS,
    MLM_METRIC_DIRECTIONS,
)

OUT_OF_RANGE = ("error", "clip")  # what a score task does with labels outside [low, high]
BI_ENCODER_OUTPUTS = ("classifier", "cosine")
BI_ENCODER_POOLINGS = ("mean", "cls")
OWN_LOSS_MODES = ("per_level", "coherent")  # hierarchy modes that train with their own loss


class TaskRules:
    """The rules every task type shares; a subclass names its type and adds its own."""

    type_name = ""
    score_loss = False  # the loss comes from SCORE_LOSSES (else LOSSES)
    needs_pair = False  # data.text_pair required
    serves = True  # has an export signature and predictions, and is scored for the best epoch

    @classmethod
    def check_config(cls, config: Any) -> None:
        """Raise ValueError ("key: problem") for settings this task type cannot use."""
        if config.weight <= 0:
            raise ValueError(f"weight: expected a positive number, got {config.weight}")
        if config.metric is not None and config.metric not in METRIC_DIRECTIONS:
            raise ValueError(
                f"metric: {config.metric!r} is not one of: {', '.join(METRIC_DIRECTIONS)}"
            )
        if cls.needs_pair and not config.data.text_pair:
            raise ValueError(f"data.text_pair: the {cls.type_name} task reads sentence pairs")
        if not config.low < config.high:
            raise ValueError(f"low, high: expected low < high, got {config.low}, {config.high}")
        if config.out_of_range not in OUT_OF_RANGE:
            raise ValueError(
                f"out_of_range: {config.out_of_range!r} is not one of: {', '.join(OUT_OF_RANGE)}"
            )
        if config.out_of_range != "error" and not cls.uses_score_loss(config.output):
            raise ValueError(
                f"out_of_range: only score tasks read labels as numbers; the {cls.type_name} "
                "task's labels are names"
            )
        if cls.type_name != MaskedLMRules.type_name and config.mlm != type(config.mlm)():
            raise ValueError(f"mlm: only mlm tasks read it; the {cls.type_name} task does not")

    @classmethod
    def uses_score_loss(cls, output: Any) -> bool:
        """Whether `loss` names a score loss (SCORE_LOSSES), given the task's `output`."""
        return cls.score_loss

    @classmethod
    def check_loss_output(cls, loss_name: str, output: str) -> None:
        """The score loss `loss_name` scores `output` (its `model_output`): one this task type
        gives? Only score tasks care."""


class ClassificationRules(TaskRules):
    type_name = "classification"


class PairClassificationRules(ClassificationRules):
    type_name = "pair_classification"
    needs_pair = True


class ScoreTaskRules(TaskRules):
    """Tasks that predict one score per example (labels are numbers)."""

    score_loss = True
    model_outputs: tuple[str, ...] = ("score",)

    @classmethod
    def check_loss_output(cls, loss_name: str, output: str) -> None:
        if output not in cls.model_outputs:
            raise ValueError(
                f"loss.name: {loss_name!r} scores a {output} output; the "
                f"{cls.type_name} task gives {' or '.join(cls.model_outputs)}"
            )


class RegressionRules(ScoreTaskRules):
    type_name = "regression"


class BiEncoderRules(ClassificationRules):
    type_name = "bi_encoder"
    needs_pair = True

    @classmethod
    def check_config(cls, config: Any) -> None:
        super().check_config(config)
        if config.output not in BI_ENCODER_OUTPUTS:
            raise ValueError(
                f"output: {config.output!r} is not one of: {', '.join(BI_ENCODER_OUTPUTS)}"
            )
        if config.pooling not in BI_ENCODER_POOLINGS:
            raise ValueError(
                f"pooling: {config.pooling!r} is not one of: {', '.join(BI_ENCODER_POOLINGS)}"
            )
        pair_parts(config.parts)
        if any(units < 1 for units in config.units):
            raise ValueError(f"units: expected positive layer widths, got {config.units}")

    @classmethod
    def uses_score_loss(cls, output: Any) -> bool:
        return output == "cosine"


class MaskedLMRules(TaskRules):
    """`mlm`: masked-LM training on unlabeled text; its loss and head are fixed."""

    type_name = "mlm"
    serves = False  # trains the encoder only (xtune pretrain, or beside labelled tasks)

    @classmethod
    def check_config(cls, config: Any) -> None:
        super().check_config(config)
        if config.loss is not None:
            raise ValueError(
                "loss: the mlm task trains with the masked pieces' cross-entropy; leave loss out"
            )
        if config.head.name != "default" or config.head.kwargs:
            raise ValueError(
                "head: the mlm task predicts pieces with the encoder's masked-LM head; leave "
                "head out"
            )
        if config.metric is not None and config.metric not in MLM_METRIC_DIRECTIONS:
            raise ValueError(
                f"metric: the mlm task reports {', '.join(MLM_METRIC_DIRECTIONS)}; got "
                f"{config.metric!r}"
            )


def hierarchy_mode(config: Any) -> str:
    """A task config's mode: `none` with a `data.label_hierarchy` reads as `leaves`."""
    mode = config.hierarchy.mode
    if mode == "none" and config.data.label_hierarchy:
        return "leaves"
    return mode


def check_hierarchy(config: Any, multi_label_losses: Collection[str]) -> None:
    """ValueError ("key: problem") for hierarchy settings a task cannot use.

    Args:
        config: the task's config.
        multi_label_losses: the names of the classification losses that are multi-label.
    """
    hierarchy, mode = config.hierarchy, hierarchy_mode(config)
    if mode == "none" and config.metric in HIERARCHY_METRIC_DIRECTIONS:
        raise ValueError(
            f"training.metric: {config.metric!r} needs hierarchy.mode (a task with hierarchical "
            "labels)"
        )
    if mode == "none":
        if hierarchy.decoding != "auto" or hierarchy.level_weights is not None:
            raise ValueError(
                "hierarchy: decoding and level_weights need hierarchy.mode (leaves, ancestors, "
                "per_level or coherent)"
            )
        return
    if config.type != "classification":
        raise ValueError(f"hierarchy.mode: {config.type} tasks take flat labels; only "
                         "classification tasks take a hierarchy")  # fmt: skip
    loss = config.loss.name if config.loss is not None else "bce"
    if mode in OWN_LOSS_MODES and loss != "bce":
        raise ValueError(
            f"loss: hierarchy.mode {mode} trains with its own loss; leave loss at bce (its "
            f"label_smoothing is used), got {loss!r}"
        )
    if mode == "ancestors" and loss not in multi_label_losses:
        raise ValueError(
            f"loss: hierarchy.mode ancestors gives a row its node and every ancestor; use a "
            f"multi-label loss (bce, focal, multilabel_ce), not {loss!r}"
        )
    if hierarchy.level_weights is not None and mode != "per_level":
        raise ValueError("hierarchy.level_weights: only hierarchy.mode per_level weighs levels")
    if mode == "leaves" and hierarchy.decoding != "auto":
        raise ValueError(
            "hierarchy.decoding: leaves mode decides by its loss (a predicted leaf is a path); "
            "leave decoding at auto"
        )
