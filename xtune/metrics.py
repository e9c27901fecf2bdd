"""Dev-set metrics: multi-label metrics, per-label reports and majority baselines, and the
correlation metrics of score (STS regression) tasks."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

# The metrics' directions live in a leaf module (the config reads them without scikit-learn).
from xtune.metric_directions import (  # noqa: F401  (re-exported)
    HIERARCHY_METRIC_DIRECTIONS,
    METRIC_DIRECTIONS,
    MULTILABEL_METRIC_DIRECTIONS,
    SCORE_METRIC_DIRECTIONS,
)


def multilabel_metrics(y_true: ArrayLike, y_pred: ArrayLike, scores: ArrayLike) -> dict[str, float]:
    """Scores a multi-label prediction; the keys are those of `MULTILABEL_METRIC_DIRECTIONS`.

    - `subset_accuracy`: share of rows whose predicted label set equals the true set exactly
      (a row with no true labels and no predictions counts as a match).
    - `top1_accuracy`: share of rows whose highest-scoring label is a true label; a row with
      no true label always counts as wrong; ties go to the lowest label index (`np.argmax`).
    - `micro_*`: true/false positives and false negatives pooled over every (row, label) cell.
    - `macro_*`: unweighted mean over *all* labels, as in the GoEmotions evaluation
      (Demszky et al., 2020, `calculate_metrics.py`: sklearn `average="macro"`). A label whose
      precision or recall is 0/0 (never predicted, or absent from `y_true`) scores 0 for that
      quantity (`zero_division=0`); in particular a label that is neither present nor
      predicted enters every macro average as 0, not as 1 and not dropped. On a small dev set
      where a rare label has no support this caps `macro_*` below 1 even for a perfect model;
      `per_label_report` shows the support, so such labels are easy to spot.
    - `samples_f1`: F1 per row, averaged over rows; a row with no true labels scores 0 whatever
      is predicted (sklearn, `zero_division=0`).
    - `hamming_loss`: share of (row, label) cells predicted wrongly (lower is better).

    Args:
        y_true: `(num_rows, num_labels)` 0/1 targets.
        y_pred: `(num_rows, num_labels)` 0/1 predictions (e.g. `scores >= threshold`).
        scores: `(num_rows, num_labels)` real-valued scores (probabilities or logits), used
            only for `top1_accuracy`.

    Example:

    ```python
    multilabel_metrics([[1, 0], [0, 1]], [[1, 1], [0, 1]], [[0.9, 0.6], [0.2, 0.7]])
    # subset_accuracy 0.5, top1_accuracy 1.0, micro_precision 2/3, micro_recall 1.0,
    # hamming_loss 0.25
    ```
    """
    true = _as_binary_matrix(y_true, "y_true")
    pred = _as_binary_matrix(y_pred, "y_pred")
    score = np.asarray(scores, dtype=np.float64)
    _check_same_shape(true, pred, "y_pred")
    _check_same_shape(true, score, "scores")
    if not np.all(np.isfinite(score)):
        raise ValueError("scores contains NaN or infinite values")

    top_label = np.argmax(score, axis=1)
    top1_hits = true[np.arange(true.shape[0]), top_label] == 1
    metrics = {
        "subset_accuracy": accuracy_score(true, pred),
        "top1_accuracy": np.mean(top1_hits),
        "micro_f1": f1_score(true, pred, average="micro", zero_division=0),
        "macro_f1": f1_score(true, pred, average="macro", zero_division=0),
        "samples_f1": f1_score(true, pred, average="samples", zero_division=0),
        "micro_precision": precision_score(true, pred, average="micro", zero_division=0),
        "micro_recall": recall_score(true, pred, average="micro", zero_division=0),
        "macro_precision": precision_score(true, pred, average="macro", zero_division=0),
        "macro_recall": recall_score(true, pred, average="macro", zero_division=0),
        "hamming_loss": hamming_loss(true, pred),
    }
    return {name: float(value) for name, value in metrics.items()}


def per_label_report(
    y_true: ArrayLike, y_pred: ArrayLike, label_names: list[str]
) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1 and support of each label, in `label_names` order.

    Each row is `{"label", "precision", "recall", "f1", "support", "predicted"}`: `support` is
    the number of rows where the label is true, `predicted` the number where it is predicted.
    0/0 ratios are reported as 0, the same convention as the `macro_*` metrics.
    """
    true = _as_binary_matrix(y_true, "y_true")
    pred = _as_binary_matrix(y_pred, "y_pred")
    _check_same_shape(true, pred, "y_pred")
    if len(label_names) != true.shape[1]:
        raise ValueError(
            f"label_names has {len(label_names)} names but y_true has {true.shape[1]} label columns"
        )
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, average=None, zero_division=0
    )
    predicted = pred.sum(axis=0)
    return [
        {
            "label": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(label_names)
    ]


def fixed_threshold_report(
    y_true: ArrayLike, scores: ArrayLike, label_names: list[str], threshold: float = 0.3
) -> dict[str, object]:
    """The GoEmotions paper's evaluation (Demszky et al., 2020, Table 4).

    A label is predicted when its sigmoid score exceeds `threshold` (0.3 in the paper);
    precision, recall and F1 are computed per label and macro-averaged over all labels
    (the mean of per-label F1, not the F1 of the mean precision and recall).

    Example: 2 labels, scores [[0.4, 0.2], [0.1, 0.6], [0.35, 0.31]], truth [[1, 0], [0, 1],
    [0, 1]] -> label 0: P 1/2, R 1/1, F1 2/3; label 1: P 2/2, R 2/2, F1 1 -> macro-F1 5/6.
    """
    predictions = (np.asarray(scores, dtype=np.float64) > threshold).astype(np.int64)
    per_label = per_label_report(y_true, predictions, label_names)
    return {
        "threshold": threshold,
        "macro_precision": float(np.mean([row["precision"] for row in per_label])),
        "macro_recall": float(np.mean([row["recall"] for row in per_label])),
        "macro_f1": float(np.mean([row["f1"] for row in per_label])),
        "per_label": per_label,
    }


def most_frequent_label_set(y_train: ArrayLike) -> np.ndarray:
    """The 0/1 label row that occurs most often in `y_train`; ties go to the earliest row."""
    train = _as_binary_matrix(y_train, "y_train")
    counts = Counter(map(tuple, train.tolist()))
    best = max(counts.values())
    # Counter keeps first-seen order, so the first pattern reaching `best` is the earliest row.
    pattern = next(row for row, count in counts.items() if count == best)
    return np.asarray(pattern, dtype=np.int64)


def majority_baseline(y_train: ArrayLike, y_eval: ArrayLike) -> dict[str, dict[str, float]]:
    """Metrics on `y_eval` of two constant predictors fitted on `y_train`.

    - `"most_frequent_label_set"`: every row gets the label set seen most often in training
      (see `most_frequent_label_set`).
    - `"most_frequent_label"`: every row gets only the label that is true in the most training
      rows (ties go to the lowest label index).

    Both use the training label frequencies as scores, so their `top1_accuracy` is that of
    always ranking the most frequent label first. A model that does not beat these numbers has
    learned nothing beyond the label prior.
    """
    train = _as_binary_matrix(y_train, "y_train")
    evaluation = _as_binary_matrix(y_eval, "y_eval")
    if train.shape[1] != evaluation.shape[1]:
        raise ValueError(
            f"y_train has {train.shape[1]} label columns but y_eval has {evaluation.shape[1]}"
        )
    num_rows = evaluation.shape[0]
    frequencies = train.mean(axis=0)
    prior_scores = np.tile(frequencies, (num_rows, 1))

    label_set_prediction = np.tile(most_frequent_label_set(train), (num_rows, 1))
    single_label_prediction = np.zeros_like(evaluation)
    single_label_prediction[:, int(np.argmax(train.sum(axis=0)))] = 1
    return {
        "most_frequent_label_set": multilabel_metrics(
            evaluation, label_set_prediction, prior_scores
        ),
        "most_frequent_label": multilabel_metrics(
            evaluation, single_label_prediction, prior_scores
        ),
    }


def is_improvement(metric: str, candidate: float, best: float | None) -> bool:
    """Whether `candidate` beats `best` for `metric` (always True when there is no best yet)."""
    if metric not in METRIC_DIRECTIONS:
        raise ValueError(
            f"unknown metric {metric!r}; expected one of {', '.join(sorted(METRIC_DIRECTIONS))}"
        )
    if best is None:
        return True
    if METRIC_DIRECTIONS[metric] == "max":
        return candidate > best
    return candidate < best


def correlation_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Pearson's r and Spearman's rho between gold and predicted scores (scipy.stats).

    Spearman ranks ties by their average rank (scipy's default). When either side is constant
    both correlations are undefined (scipy returns NaN and warns); here they are 0.0, with no
    warning, so a collapsed model (e.g. the same score for every pair early in training) reads
    as "no correlation" and checkpoint selection keeps working.

    Args:
        y_true: `(num_rows,)` gold scores (a `(num_rows, 1)` column is accepted).
        y_pred: `(num_rows,)` predicted scores, any monotone scale for Spearman.

    Example:

    ```python
    correlation_metrics([0, 1, 2, 3], [0.1, 0.2, 0.5, 0.4])
    # {"pearson": 0.8485, "spearman": 0.8}
    ```
    """
    true, pred = _as_score_vectors(y_true, y_pred)
    if np.all(true == true[0]) or np.all(pred == pred[0]):
        return {"pearson": 0.0, "spearman": 0.0}
    with warnings.catch_warnings():
        # Nearly constant inputs can still warn about precision; the values are still returned.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", stats.NearConstantInputWarning)
        pearson = stats.pearsonr(true, pred).statistic
        spearman = stats.spearmanr(true, pred).statistic
    return {"pearson": _finite_or_zero(pearson), "spearman": _finite_or_zero(spearman)}


def score_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """`correlation_metrics` plus `mse`, the mean squared error in label units; the keys are
    those of `SCORE_METRIC_DIRECTIONS`. `mse` only means something when `y_pred` is in label
    units (a regression head, or the cosine loss's scores; not CoSENT's)."""
    true, pred = _as_score_vectors(y_true, y_pred)
    return {**correlation_metrics(true, pred), "mse": float(np.mean((pred - true) ** 2))}


def _as_score_vectors(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    vectors = []
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        vector = np.asarray(values, dtype=np.float64)
        if vector.ndim == 2 and vector.shape[1] == 1:
            vector = vector[:, 0]
        if vector.ndim != 1 or vector.shape[0] < 2:
            raise ValueError(
                f"{name} must be a vector of at least 2 scores, got shape {vector.shape}"
            )
        if not np.all(np.isfinite(vector)):
            raise ValueError(f"{name} contains NaN or infinite values")
        vectors.append(vector)
    if vectors[0].shape != vectors[1].shape:
        raise ValueError(
            f"y_pred has shape {vectors[1].shape} but y_true has shape {vectors[0].shape}"
        )
    return vectors[0], vectors[1]


def _finite_or_zero(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0


def _as_binary_matrix(values: ArrayLike, name: str) -> np.ndarray:
    matrix = np.asarray(values)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty (num_rows, num_labels) matrix, got shape {matrix.shape}"
        )
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 (or False/True) values")
    return matrix.astype(np.int64)


def _check_same_shape(reference: np.ndarray, other: np.ndarray, name: str) -> None:
    if other.shape != reference.shape:
        raise ValueError(f"{name} has shape {other.shape} but y_true has shape {reference.shape}")


def evaluate_scores(
    loss: Any, y_true: np.ndarray, scores: np.ndarray, thresholds: Any = None
) -> dict[str, float]:
    predictions = np.asarray(loss.decide(scores, thresholds))
    return multilabel_metrics(y_true, predictions, scores)


def scores_of(loss: Any, logits: np.ndarray) -> np.ndarray:
    return np.asarray(loss.scores(logits), dtype=np.float32)


def hierarchical_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    ancestors: ArrayLike,
    depths: ArrayLike,
    consistent: ArrayLike | None = None,
) -> dict[str, float]:
    """Per-level and hierarchical scores of predictions over the nodes of a label tree.

    - `hierarchical_precision/recall/f1` (Kiritchenko et al., 2005): each row's true and
      predicted node sets are augmented with every ancestor, then pooled over rows:
      hP = sum |P^ & T^| / sum |P^|, hR = sum |P^ & T^| / sum |T^|, hF = 2 hP hR / (hP + hR).
    - `level_<k>_accuracy`: among rows with a true node at level k (1 = top), the share whose
      predicted level-k nodes equal the true ones (both sets with ancestors added);
      `level_<k>_micro_f1` / `macro_f1`: F1 over that level's nodes (macro over all of them,
      as `multilabel_metrics`).
    - `consistency`: the share of rows in `consistent` (given: the rows whose decisions
      before any tree decoding were closed under ancestors), else of rows whose predictions
      are.

    Args:
        y_true, y_pred: `(rows, nodes)` 0/1 over the nodes.
        ancestors: `(nodes, nodes)`, `[i, j] = 1` when node j is node i or an ancestor of it.
        depths: each node's level, 0 for the top.

    Example: nodes a, a/x, b; truth {a/x}, prediction {b}: T^ = {a, a/x}, P^ = {b}: hP 0,
    hR 0; prediction {a}: hP 1, hR 1/2, hF 2/3.
    """
    true = _as_binary_matrix(y_true, "y_true")
    pred = _as_binary_matrix(y_pred, "y_pred")
    _check_same_shape(true, pred, "y_pred")
    a = np.asarray(ancestors, np.int64)
    depth = np.asarray(depths)
    true_augmented = (true @ a) > 0  # node j on a true path: some true i has j as ancestor
    pred_augmented = (pred @ a) > 0
    overlap = float(np.sum(true_augmented & pred_augmented))
    h_precision = overlap / max(float(pred_augmented.sum()), 1.0)
    h_recall = overlap / max(float(true_augmented.sum()), 1.0)
    h_f1 = 2 * h_precision * h_recall / (h_precision + h_recall) if overlap else 0.0
    closed = pred_augmented == (pred > 0)
    consistent = np.all(closed, axis=1) if consistent is None else np.asarray(consistent, bool)
    metrics = {
        "hierarchical_precision": h_precision,
        "hierarchical_recall": h_recall,
        "hierarchical_f1": h_f1,
        "consistency": float(np.mean(consistent)),
    }
    for level in range(int(depth.max()) + 1):
        columns = depth == level
        level_true = true_augmented[:, columns].astype(np.int64)
        level_pred = pred_augmented[:, columns].astype(np.int64)
        labelled = level_true.any(axis=1)
        same = np.all(level_true == level_pred, axis=1)
        metrics[f"level_{level + 1}_accuracy"] = (
            float(np.mean(same[labelled])) if labelled.any() else 0.0
        )
        metrics[f"level_{level + 1}_micro_f1"] = float(
            f1_score(level_true, level_pred, average="micro", zero_division=0)
        )
        metrics[f"level_{level + 1}_macro_f1"] = float(
            f1_score(level_true, level_pred, average="macro", zero_division=0)
        )
    return metrics
