"""Decision thresholds tuned on a dev set for the run's selection metric, and the decision
rule a run serves: the loss's default threshold or the tuned ones, whichever is better on dev
when measured honestly (cross-validated on dev). numpy (and sklearn's `KFold`) only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

# The settings' names and `objective_for` live in a leaf module the config reads.
from xtune.threshold_objectives import (  # noqa: F401  (re-exported)
    DECISION_RULES,
    GLOBAL_OBJECTIVES,
    OBJECTIVES,
    objective_for,
)

# A label with fewer dev positives than this keeps the default threshold under `per_label_f1`:
# a handful of positives cannot place a threshold (the held-out checks count the tuning part).
MIN_DEV_POSITIVES = 5
# The tuned rule's honest dev value: thresholds tuned on 4/5 of dev predict the other 1/5, five
# times; a dev set under CV_FOLDS * MIN_ROWS_PER_FOLD rows is too small to check them.
CV_FOLDS = 5
MIN_ROWS_PER_FOLD = 2
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # 0.05, 0.06, ..., 0.95
_TIE = 1e-12  # metric values closer than this count as equal
# Larger is better for all metrics the rule is chosen on, except these.
LOWER_IS_BETTER = ("hamming_loss",)


def default_candidates(scores: np.ndarray) -> np.ndarray:
    """`GRID` plus the 1st..99th percentiles of all dev scores (pooled over labels).

    The percentiles reach below 0.05 / above 0.95, where rare labels' scores often sit.
    """
    percentiles = np.quantile(scores, np.linspace(0.01, 0.99, 99))
    return np.unique(np.concatenate([GRID, percentiles]).astype(np.float32))


def tune_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    objective: str = "per_label_f1",
    candidates: np.ndarray | None = None,
    default_threshold: float = 0.5,
    min_positives: int = 1,
) -> np.ndarray:
    """One threshold per label, chosen from `candidates` for `objective` on `(y_true, scores)`.

    A label is predicted when `score > threshold`, the rule `ClassificationLoss.decide` uses.

    - `"per_label_f1"`: each label independently gets the candidate that maximises its F1;
      labels with fewer than `min_positives` positives, and labels whose best F1 is 0, keep
      `default_threshold`: the dev set says too little about where to put them.
    - a metric of `GLOBAL_OBJECTIVES`: one threshold shared by every label, the candidate with
      the best value of that metric over the whole matrix (the labels tuned jointly).

    When several candidates tie for the best value the middle one is taken (away from the edge
    of the plateau). Everything is counted in float32, like the exported model's scores, with
    one sort + `bincount` over the whole matrix: no Python loop over rows.

    Args:
        y_true: `(num_examples, num_labels)` 0/1 matrix.
        scores: `(num_examples, num_labels)` scores, e.g. `ClassificationLoss.scores(logits)`.
        objective: `"per_label_f1"` or one of `GLOBAL_OBJECTIVES`.
        candidates: thresholds to try; default `default_candidates(scores)`.
            `default_threshold` is always added.
        default_threshold: for labels the dev set cannot tune.
        min_positives: `"per_label_f1"`'s fewest positives of a tunable label.

    Returns:
        `(num_labels,)` float32 thresholds.

    Example:

    >>> y_true = np.array([[1], [1], [0], [0]])
    >>> scores = np.array([[0.9], [0.3], [0.2], [0.1]])
    >>> tune_thresholds(y_true, scores, candidates=[0.1, 0.15, 0.25, 0.5])
    array([0.25], dtype=float32)   # F1 = 1 only above 0.2 and below 0.3
    """
    y_true, scores = _check_inputs(y_true, scores)
    valid = ("per_label_f1", *GLOBAL_OBJECTIVES)
    if objective not in valid:
        raise ValueError(f"unknown objective {objective!r}; valid choices: {', '.join(valid)}")
    if candidates is None:
        candidates = default_candidates(scores)
    candidates = np.unique(np.append(candidates, default_threshold).astype(np.float32))
    default_index = int(np.searchsorted(candidates, np.float32(default_threshold)))
    num_labels = y_true.shape[1]
    if objective in GLOBAL_OBJECTIVES:
        values = _global_metric(objective, y_true, scores, candidates)
        best = _middle_of_best(-values if objective in LOWER_IS_BETTER else values)
        return np.full(num_labels, candidates[best], dtype=np.float32)

    true_positives, predicted = _counts_above(y_true, scores, candidates)
    positives = y_true.sum(axis=0)
    per_label_f1 = _f1(true_positives, predicted, positives[:, None])
    tunable = (positives >= max(min_positives, 1)) & (per_label_f1.max(axis=1) > 0)
    chosen = _middle_of_best(per_label_f1)
    return candidates[np.where(tunable, chosen, default_index)]


def prediction_metric(metric: str, y_true: np.ndarray, predicted: np.ndarray) -> float | None:
    """`metric` (a key of `xtune.metrics.multilabel_metrics`, same definitions, zero_division
    0) of 0/1 `predicted`; None for `top1_accuracy`, which no threshold changes."""
    y_true, predicted = np.asarray(y_true, np.int64), np.asarray(predicted, np.int64)
    positives, predicted_count = y_true.sum(axis=0), predicted.sum(axis=0)
    true_positives = (y_true * predicted).sum(axis=0)
    row_tp, row_pred, row_pos = (
        (y_true * predicted).sum(axis=1),
        predicted.sum(axis=1),
        y_true.sum(axis=1),
    )
    micro_tp, micro_pred, micro_pos = true_positives.sum(), predicted_count.sum(), positives.sum()
    values = {
        "subset_accuracy": lambda: float(np.mean((y_true == predicted).all(axis=1))),
        "micro_f1": lambda: float(_f1(micro_tp, micro_pred, micro_pos)),
        "macro_f1": lambda: float(np.mean(_f1(true_positives, predicted_count, positives))),
        "samples_f1": lambda: float(np.mean(_f1(row_tp, row_pred, row_pos))),
        "micro_precision": lambda: _ratio(micro_tp, micro_pred),
        "micro_recall": lambda: _ratio(micro_tp, micro_pos),
        "macro_precision": lambda: float(np.mean(_ratios(true_positives, predicted_count))),
        "macro_recall": lambda: float(np.mean(_ratios(true_positives, positives))),
        "hamming_loss": lambda: float(np.mean(y_true != predicted)),
    }
    if metric not in values:
        return None
    return values[metric]()


def is_better(metric: str, candidate: float, reference: float) -> bool:
    """Whether `candidate` beats `reference` on `metric` by more than round-off."""
    if metric in LOWER_IS_BETTER:
        return candidate < reference - _TIE
    return candidate > reference + _TIE


# ---------------------------------------------------------------- the decision rule


@dataclass
class RuleChoice:
    """The decision rule a task serves and the dev values it was chosen on.

    `dev_default`: the selection metric under the loss's default threshold; `dev_tuned`: under
    the thresholds tuned on all of dev (what the served model gives on dev when they are
    served; optimistic, they were fitted there); `dev_tuned_cross_validated`: each dev row
    predicted by thresholds tuned on the other folds, the honest value `auto` compares.
    """

    served: str  # "default" | "tuned"
    setting: str  # training.decision_rule
    metric: str
    objective: str | None
    default_threshold: float | None  # None: the loss predicts the top-1 label
    thresholds: np.ndarray | None  # tuned on all of dev; None when nothing was tuned
    dev_default: float | None
    dev_tuned: float | None = None
    dev_tuned_cross_validated: float | None = None
    folds: int = 0
    reason: str = ""

    @property
    def served_thresholds(self) -> np.ndarray | None:
        return self.thresholds if self.served == "tuned" else None

    @property
    def dev_served(self) -> float | None:
        return self.dev_tuned if self.served == "tuned" else self.dev_default

    def record(self, labels: list[str]) -> dict[str, Any]:
        """metrics.json's and thresholds.json's record of the choice (thresholds by label)."""
        tuned = None
        if self.thresholds is not None:
            tuned = {name: float(t) for name, t in zip(labels, self.thresholds, strict=True)}
        return {
            "served": self.served,
            "setting": self.setting,
            "metric": self.metric,
            "objective": self.objective,
            "default_threshold": self.default_threshold,
            "dev": {
                "default": self.dev_default,
                "tuned": self.dev_tuned,
                "tuned_cross_validated": self.dev_tuned_cross_validated,
            },
            "folds": self.folds,
            "min_dev_positives": MIN_DEV_POSITIVES if self.objective == "per_label_f1" else None,
            "reason": self.reason,
            "tuned_thresholds": tuned,
        }

    def line(self) -> str:
        """One line for the terminal: the rule served and both rules' dev values."""
        values = f"dev {self.metric}: default rule {format_value(self.dev_default)}"
        if self.thresholds is not None:
            values += (
                f", tuned thresholds {format_value(self.dev_tuned_cross_validated)} "
                f"cross-validated ({format_value(self.dev_tuned)} fitted on all of dev)"
            )
        return f"decision rule served: {self.served} ({self.reason}); {values}"


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def top1_rule(metric: str, dev_default: float | None) -> RuleChoice:
    """A loss that predicts the top-1 label has no thresholds: its own rule is served."""
    return RuleChoice(
        "default", "default", metric, None, None, None, dev_default, reason="top-1 loss"
    )


def choose_decision_rule(
    y_true: np.ndarray,
    scores: np.ndarray,
    metric: str,
    rule: str = "auto",
    tune: str | None = "auto",
    default_threshold: float = 0.5,
    folds: int = CV_FOLDS,
    seed: int = 0,
) -> RuleChoice:
    """Tune thresholds on dev for `metric` and choose the rule to serve.

    - `rule="default"`: the loss's default threshold is served (thresholds are still tuned and
      reported when `tune` is set); `"tuned"`: the thresholds tuned on all of dev are served.
    - `rule="auto"`: the tuned thresholds are served only when their cross-validated dev value
      of `metric` (`folds`-fold `KFold` over dev rows, shuffled with `seed`; each fold
      predicted by thresholds tuned on the others) beats the default rule's dev value; ties,
      a dev set too small to cross-validate, and a metric thresholds cannot change serve the
      default rule. So `auto` is never worse on dev than the default rule, measured honestly.

    Args:
        y_true: `(num_examples, num_labels)` 0/1 dev labels.
        scores: the model's dev scores, the same shape.
        metric: the run's selection metric (`training.metric` or the task's).
        rule: `training.decision_rule`.
        tune: `training.tune_thresholds` (`auto`, an objective of `OBJECTIVES`, or None).
        default_threshold: the loss's own threshold.
    """
    y_true, scores = _check_inputs(y_true, scores)
    if rule not in DECISION_RULES:
        raise ValueError(f"unknown decision rule {rule!r}; valid: {', '.join(DECISION_RULES)}")
    objective = objective_for(tune, metric)
    dev_default = prediction_metric(metric, y_true, scores > np.float32(default_threshold))
    choice = RuleChoice("default", rule, metric, objective, default_threshold, None, dev_default)
    if objective is None:
        choice.reason = "no thresholds tuned" if tune is None else f"{metric} takes no threshold"
        return choice

    def tuned_on(rows: np.ndarray) -> np.ndarray:
        return tune_thresholds(
            y_true[rows],
            scores[rows],
            objective,
            default_threshold=default_threshold,
            min_positives=MIN_DEV_POSITIVES,
        )

    everything = np.arange(len(y_true))
    choice.thresholds = tuned_on(everything)
    choice.dev_tuned = prediction_metric(metric, y_true, scores > choice.thresholds)
    folds = min(folds, len(y_true) // MIN_ROWS_PER_FOLD)
    if folds >= 2:
        held_out = np.zeros_like(y_true)
        for fit, check in KFold(folds, shuffle=True, random_state=seed).split(everything):
            held_out[check] = scores[check] > tuned_on(fit)
        choice.folds = folds
        choice.dev_tuned_cross_validated = prediction_metric(metric, y_true, held_out)
    choice.served, choice.reason = served_rule(choice)
    return choice


def served_rule(choice: RuleChoice) -> tuple[str, str]:
    """(rule served, why) for `choose_decision_rule`."""
    if choice.setting != "auto":
        return choice.setting, "training.decision_rule"
    honest = choice.dev_tuned_cross_validated
    if honest is None or choice.dev_default is None:
        return "default", "auto: dev too small to cross-validate tuned thresholds"
    if is_better(choice.metric, honest, choice.dev_default):
        return "tuned", f"auto: tuned thresholds better on {choice.folds}-fold dev"
    return "default", f"auto: tuned thresholds not better on {choice.folds}-fold dev"


# ---------------------------------------------------------------- counting


def _check_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or y_true.shape != scores.shape:
        raise ValueError(
            "y_true and scores must both be (num_examples, num_labels); "
            f"got y_true {y_true.shape} and scores {scores.shape}"
        )
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return y_true.astype(np.int64), scores


def _counts_above(
    y_true: np.ndarray, scores: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`(true_positives, predicted)`, each `(num_labels, num_candidates)`, for `score > c`."""
    return _grouped_counts_above(y_true.T, scores.T, candidates)  # a group per label


def _grouped_counts_above(
    y_true: np.ndarray, scores: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`(true_positives, predicted)`, each `(num_groups, num_candidates)`: per row of the
    `(num_groups, group_size)` inputs, how many scores are `> candidates[k]` (and positive)."""
    num_groups, num_bins = scores.shape[0], len(candidates) + 1
    # bucket = how many candidates lie strictly below the score, so score > candidates[k]
    # exactly when bucket > k. Each group gets its own num_bins bins in one bincount.
    bucket = np.searchsorted(candidates, scores, side="left")
    flat_bins = (bucket + num_bins * np.arange(num_groups)[:, None]).ravel()
    size = num_groups * num_bins
    per_bin = np.bincount(flat_bins, minlength=size).reshape(num_groups, num_bins)
    positive_per_bin = np.bincount(flat_bins, weights=y_true.ravel(), minlength=size)
    positive_per_bin = positive_per_bin.reshape(num_groups, num_bins).astype(np.int64)

    def count_above(counts: np.ndarray) -> np.ndarray:
        at_or_above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
        return at_or_above[:, 1:]  # column k: bins k+1.., i.e. score > candidates[k]

    return count_above(positive_per_bin), count_above(per_bin)


def _global_metric(
    metric: str, y_true: np.ndarray, scores: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """`metric` of `scores > c` for every candidate `c` shared by all labels, from per-row
    counts (`(num_rows, num_candidates)`)."""
    row_tp, row_pred = _grouped_counts_above(y_true, scores, candidates)
    row_pos = y_true.sum(axis=1)[:, None]
    if metric == "micro_f1":
        return _f1(row_tp.sum(axis=0), row_pred.sum(axis=0), row_pos.sum())
    if metric == "subset_accuracy":  # every positive above, nothing else above
        return np.mean((row_tp == row_pos) & (row_pred == row_pos), axis=0)
    if metric == "samples_f1":
        return np.mean(_f1(row_tp, row_pred, row_pos), axis=0)
    wrong = row_pred.sum(axis=0) - 2 * row_tp.sum(axis=0) + row_pos.sum()  # FP + FN
    return wrong / y_true.size  # hamming_loss


def _f1(true_positives: Any, predicted: Any, positives: Any) -> np.ndarray:
    denominator = np.asarray(predicted + positives)
    return np.divide(
        2.0 * np.asarray(true_positives),
        denominator,
        out=np.zeros(np.broadcast(true_positives, denominator).shape),
        where=denominator > 0,
    )


def _ratios(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(
        numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0
    ).astype(float)


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _middle_of_best(values: np.ndarray) -> np.ndarray:
    """Per row, the middle index (upper middle if even) among the columns tied for the max."""
    is_best = values >= values.max(axis=-1, keepdims=True) - _TIE
    rank = np.cumsum(is_best, axis=-1)  # 1 at the first best column, 2 at the second, ...
    middle_rank = rank[..., -1:] // 2 + 1
    return np.argmax(is_best & (rank == middle_rank), axis=-1)
