"""Threshold tuning finds known optima, leaves untunable labels alone, and agrees with sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from xtune.metrics import multilabel_metrics
from xtune.thresholds import (
    GLOBAL_OBJECTIVES,
    GRID,
    choose_decision_rule,
    prediction_metric,
    tune_thresholds,
)

# Columns: 0 separable (any threshold in [0.58, 0.62) gives F1 = 1); 1 needs a trade-off
# (best F1 = 6/7 for thresholds in [0.30, 0.35)); 2 has no positives; 3 has positives that
# score 0, so no threshold gives them F1 > 0.
Y_TRUE = np.array(
    [
        [1, 1, 0, 1],
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
)
SCORES = np.array(
    [
        [0.90, 0.90, 0.7, 0.0],
        [0.70, 0.80, 0.1, 0.0],
        [0.62, 0.35, 0.6, 0.0],
        [0.58, 0.40, 0.2, 0.0],
        [0.30, 0.30, 0.9, 0.0],
        [0.10, 0.20, 0.3, 0.0],
        [0.10, 0.10, 0.4, 0.0],
        [0.05, 0.05, 0.2, 0.0],
    ]
)


def micro_f1(y_true, scores, thresholds):
    return f1_score(y_true, scores > thresholds, average="micro", zero_division=0)


@pytest.mark.parametrize("candidates", [None, GRID])
def test_per_label_f1_finds_the_known_best_thresholds(candidates):
    thresholds = tune_thresholds(Y_TRUE, SCORES, candidates=candidates)
    assert thresholds.shape == (4,) and thresholds.dtype == np.float32
    assert 0.58 <= thresholds[0] < 0.62
    assert 0.30 <= thresholds[1] < 0.35
    assert f1_score(Y_TRUE[:, 1], SCORES[:, 1] > thresholds[1]) == pytest.approx(6 / 7)


def test_labels_the_dev_set_cannot_tune_keep_the_default():
    assert tune_thresholds(Y_TRUE, SCORES)[2:].tolist() == [0.5, 0.5]
    thresholds = tune_thresholds(Y_TRUE, SCORES, default_threshold=0.25)
    assert thresholds[2:].tolist() == [0.25, 0.25]


def test_ties_pick_the_middle_of_the_best_plateau():
    thresholds = tune_thresholds(Y_TRUE[:, :1], SCORES[:, :1], candidates=GRID)
    assert thresholds[0] == np.float32(0.60)  # F1 = 1 at 0.58, 0.59, 0.60, 0.61


def test_docstring_example():
    y_true = np.array([[1], [1], [0], [0]])
    scores = np.array([[0.9], [0.3], [0.2], [0.1]])
    thresholds = tune_thresholds(y_true, scores, candidates=[0.1, 0.15, 0.25, 0.5])
    np.testing.assert_array_equal(thresholds, np.array([0.25], np.float32))


def random_dev_set(seed, num_examples=300, num_labels=12):
    rng = np.random.default_rng(seed)
    y_true = rng.random((num_examples, num_labels)) < rng.uniform(0.02, 0.4, num_labels)
    noise = rng.normal(scale=rng.uniform(0.5, 2.0, num_labels), size=y_true.shape)
    scores = 1 / (1 + np.exp(-(2.0 * y_true - 2.5 + noise)))
    return y_true.astype(int), scores.astype(np.float32)


def brute_force_f1(y_true, scores, candidates):
    """F1 of every label at every candidate, `(num_labels, num_candidates)`, by broadcasting."""
    predicted = scores[:, :, None] > candidates
    tp = (predicted & (y_true[:, :, None] == 1)).sum(axis=0)
    return 2 * tp / (predicted.sum(axis=0) + y_true.sum(axis=0)[:, None])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_label_f1_matches_a_brute_force_search(seed):
    y_true, scores = random_dev_set(seed)
    thresholds = tune_thresholds(y_true, scores, candidates=GRID)
    best = brute_force_f1(y_true, scores, GRID).max(axis=1)
    tuned = f1_score(y_true, scores > thresholds, average=None)
    np.testing.assert_allclose(tuned, best, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("objective", GLOBAL_OBJECTIVES)
def test_global_objectives_pick_the_best_shared_threshold(seed, objective):
    """One threshold for every label, tuned jointly: the candidate with the best value of the
    metric (sklearn's definition, brute force)."""
    y_true, scores = random_dev_set(seed)
    thresholds = tune_thresholds(y_true, scores, objective, candidates=GRID)
    assert len(set(thresholds.tolist())) == 1
    sign = -1 if objective == "hamming_loss" else 1
    tuned = sign * multilabel_metrics(y_true, scores > thresholds, scores)[objective]
    best = max(sign * multilabel_metrics(y_true, scores > c, scores)[objective] for c in GRID)
    assert tuned == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_prediction_metric_agrees_with_sklearn(seed):
    y_true, scores = random_dev_set(seed)
    predicted = scores > 0.4
    expected = multilabel_metrics(y_true, predicted, scores)
    for name, value in expected.items():
        got = prediction_metric(name, y_true, predicted)
        assert got is None if name == "top1_accuracy" else got == pytest.approx(value), name


def test_rare_labels_keep_the_default_under_a_minimum_of_positives():
    y_true, scores = random_dev_set(0, num_examples=40)
    positives = y_true.sum(axis=0)
    thresholds = tune_thresholds(y_true, scores, min_positives=5, default_threshold=0.5)
    assert (thresholds[positives < 5] == 0.5).all()
    assert (thresholds[positives >= 5] != 0.5).any()


def overfit_dev_set(seed):
    """Scores that carry no information: any thresholds tuned on them only fit noise."""
    rng = np.random.default_rng(seed)
    y_true = (rng.random((80, 20)) < 0.1).astype(int)
    return y_true, rng.random((80, 20)).astype(np.float32)


def test_auto_serves_the_default_rule_when_tuned_thresholds_only_fit_dev():
    y_true, scores = overfit_dev_set(0)
    choice = choose_decision_rule(y_true, scores, "macro_f1")
    # Per-label thresholds fitted on all of dev look better there, but not on held-out folds.
    assert choice.dev_tuned > choice.dev_default
    assert choice.dev_tuned_cross_validated <= choice.dev_default
    assert choice.served == "default" and choice.served_thresholds is None
    assert choice.dev_served == choice.dev_default
    forced = choose_decision_rule(y_true, scores, "macro_f1", rule="tuned")
    assert forced.served == "tuned"
    np.testing.assert_array_equal(forced.served_thresholds, choice.thresholds)


def test_auto_serves_tuned_thresholds_that_help_on_held_out_folds():
    rng = np.random.default_rng(1)
    y_true = (rng.random((200, 4)) < 0.3).astype(int)
    # Well-ranked scores that all sit below 0.5: the default rule predicts nothing.
    scores = (0.1 + 0.3 * y_true + 0.05 * rng.random(y_true.shape)).astype(np.float32)
    choice = choose_decision_rule(y_true, scores, "subset_accuracy")
    assert choice.objective == "subset_accuracy" and choice.folds == 5
    assert choice.dev_default < 0.3 and choice.dev_tuned_cross_validated == 1.0
    assert choice.served == "tuned" and choice.dev_served == choice.dev_tuned == 1.0
    record = choice.record(["a", "b", "c", "d"])
    assert record["served"] == "tuned" and set(record["tuned_thresholds"]) == set("abcd")
    assert "decision rule served: tuned" in choice.line()


def test_metrics_thresholds_cannot_change_serve_the_default_rule():
    y_true, scores = random_dev_set(0)
    choice = choose_decision_rule(y_true, scores, "top1_accuracy")
    assert choice.served == "default" and choice.thresholds is None
    tiny = choose_decision_rule(y_true[:3], scores[:3], "micro_f1")
    assert tiny.served == "default" and "too small" in tiny.reason


@pytest.mark.parametrize("objective", ["per_label_f1", "micro_f1"])
def test_deterministic_and_independent_of_row_order(objective):
    y_true, scores = random_dev_set(3)
    first = tune_thresholds(y_true, scores, objective)
    order = np.random.default_rng(0).permutation(len(y_true))
    np.testing.assert_array_equal(first, tune_thresholds(y_true, scores, objective))
    np.testing.assert_array_equal(first, tune_thresholds(y_true[order], scores[order], objective))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown objective 'macro'; valid choices"):
        tune_thresholds(Y_TRUE, SCORES, "macro")
    with pytest.raises(ValueError, match=r"got y_true \(8, 4\) and scores \(8, 3\)"):
        tune_thresholds(Y_TRUE, SCORES[:, :3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        tune_thresholds(Y_TRUE * 2, SCORES)
