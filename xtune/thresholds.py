"""Tune per-label decision thresholds on a dev set to maximise F1 (numpy only, no model)."""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("per_label_f1", "micro_f1")
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # 0.05, 0.06, ..., 0.95
_TIE = 1e-12  # F1 values closer than this count as equal


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
    max_passes: int = 5,
) -> np.ndarray:
    """One threshold per label, chosen from `candidates` to maximise F1 on `(y_true, scores)`.

    A label is predicted when `score > threshold`, the rule `ClassificationLoss.decide` uses.

    - `"per_label_f1"`: each label independently gets the candidate that maximises its F1.
    - `"micro_f1"`: coordinate ascent on micro-F1. Start from the best single threshold shared
      by all labels, then sweep the labels in order, moving each one's threshold to the best
      candidate with the others fixed; stop when a sweep changes nothing or after
      `max_passes` sweeps. Micro-F1 never decreases, so the result is at least as good as
      the best global threshold.

    Labels with no positives in `y_true`, and labels whose best F1 is 0, keep
    `default_threshold`: the dev set says nothing about where to put them. When several
    candidates tie for the best F1 the middle one is taken (away from the edge of the
    plateau). Everything is counted in float32, like the exported model's scores, and the
    counting is one sort + `bincount` over the whole matrix: no Python loop over rows.

    Args:
        y_true: `(num_examples, num_labels)` 0/1 matrix.
        scores: `(num_examples, num_labels)` scores, e.g. `ClassificationLoss.scores(logits)`.
        objective: one of `OBJECTIVES`.
        candidates: thresholds to try; default `default_candidates(scores)`.
            `default_threshold` is always added.
        default_threshold: for labels the dev set cannot tune.
        max_passes: sweeps over the labels for `"micro_f1"`.

    Returns:
        `(num_labels,)` float32 thresholds.

    Example:

    >>> y_true = np.array([[1], [1], [0], [0]])
    >>> scores = np.array([[0.9], [0.3], [0.2], [0.1]])
    >>> tune_thresholds(y_true, scores, candidates=[0.1, 0.15, 0.25, 0.5])
    array([0.25], dtype=float32)   # F1 = 1 only above 0.2 and below 0.3
    """
    y_true, scores = _check_inputs(y_true, scores)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid choices: {', '.join(OBJECTIVES)}")
    if candidates is None:
        candidates = default_candidates(scores)
    candidates = np.unique(np.append(candidates, default_threshold).astype(np.float32))
    default_index = int(np.searchsorted(candidates, np.float32(default_threshold)))

    true_positives, predicted = _counts_above(y_true, scores, candidates)
    positives = y_true.sum(axis=0)
    per_label_f1 = _f1(true_positives, predicted, positives[:, None])
    tunable = (positives > 0) & (per_label_f1.max(axis=1) > 0)

    if objective == "per_label_f1":
        chosen = _middle_of_best(per_label_f1)
    else:
        chosen = _micro_f1_ascent(
            true_positives, predicted, positives.sum(), tunable, default_index, max_passes
        )
    return candidates[np.where(tunable, chosen, default_index)]


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
    num_labels, num_bins = scores.shape[1], len(candidates) + 1
    # bucket = how many candidates lie strictly below the score, so score > candidates[k]
    # exactly when bucket > k. Each label gets its own num_bins bins in one bincount.
    bucket = np.searchsorted(candidates, scores, side="left")
    flat_bins = (bucket + num_bins * np.arange(num_labels)).ravel()
    size = num_labels * num_bins
    per_bin = np.bincount(flat_bins, minlength=size).reshape(num_labels, num_bins)
    positive_per_bin = np.bincount(flat_bins, weights=y_true.ravel(), minlength=size)
    positive_per_bin = positive_per_bin.reshape(num_labels, num_bins).astype(np.int64)

    def count_above(counts: np.ndarray) -> np.ndarray:
        at_or_above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
        return at_or_above[:, 1:]  # column k: bins k+1.., i.e. score > candidates[k]

    return count_above(positive_per_bin), count_above(per_bin)


def _f1(true_positives: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
    denominator = predicted + positives
    return np.divide(
        2.0 * true_positives,
        denominator,
        out=np.zeros(np.broadcast(true_positives, denominator).shape),
        where=denominator > 0,
    )


def _middle_of_best(values: np.ndarray) -> np.ndarray:
    """Per row, the middle index (upper middle if even) among the columns tied for the max."""
    is_best = values >= values.max(axis=-1, keepdims=True) - _TIE
    rank = np.cumsum(is_best, axis=-1)  # 1 at the first best column, 2 at the second, ...
    middle_rank = rank[..., -1:] // 2 + 1
    return np.argmax(is_best & (rank == middle_rank), axis=-1)


def _micro_f1_ascent(
    true_positives: np.ndarray,
    predicted: np.ndarray,
    total_positives: int,
    tunable: np.ndarray,
    default_index: int,
    max_passes: int,
) -> np.ndarray:
    """Candidate index per label from coordinate ascent on micro-F1 (see `tune_thresholds`)."""
    num_labels = true_positives.shape[0]
    chosen = np.full(num_labels, default_index)
    # Start: the best threshold shared by the tunable labels, the others at the default.
    fixed_tp = true_positives[~tunable, default_index].sum()
    fixed_pred = predicted[~tunable, default_index].sum()
    shared = _f1(
        true_positives[tunable].sum(axis=0) + fixed_tp,
        predicted[tunable].sum(axis=0) + fixed_pred,
        total_positives,
    )
    chosen[tunable] = _middle_of_best(shared)
    labels = np.arange(num_labels)
    for _ in range(max_passes):
        changed = False
        for label in np.flatnonzero(tunable):
            others_tp = true_positives[labels, chosen].sum() - true_positives[label, chosen[label]]
            others_pred = predicted[labels, chosen].sum() - predicted[label, chosen[label]]
            micro = _f1(
                others_tp + true_positives[label], others_pred + predicted[label], total_positives
            )
            if micro[chosen[label]] < micro.max() - _TIE:
                chosen[label] = _middle_of_best(micro)
                changed = True
        if not changed:
            break
    return chosen
