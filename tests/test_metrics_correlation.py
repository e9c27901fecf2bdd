"""Correlation metrics of score tasks against scipy.stats called directly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from xtune.metrics import (
    METRIC_DIRECTIONS,
    SCORE_METRIC_DIRECTIONS,
    correlation_metrics,
    is_improvement,
    score_metrics,
)

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("seed", range(3))
def test_pearson_and_spearman_match_scipy_on_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, size=40).astype(float)  # STS-like 0..5 with many ties
    y_pred = 0.5 * y_true + rng.normal(size=40)
    y_pred[:10] = np.round(y_pred[:10])  # ties among predictions too
    metrics = correlation_metrics(y_true, y_pred)
    assert metrics.keys() == {"pearson", "spearman"}
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(y_true, y_pred).statistic)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(y_true, y_pred).statistic)
    assert all(isinstance(value, float) for value in metrics.values())


def test_hand_computed_example_and_monotone_invariance():
    metrics = correlation_metrics([0, 1, 2, 3], [0.1, 0.2, 0.5, 0.4])
    # Spearman: ranks [1, 2, 3, 4] vs [1, 2, 4, 3], d^2 sum = 2 -> 1 - 6 * 2 / (4 * 15) = 0.8.
    assert metrics["spearman"] == pytest.approx(0.8)
    # Pearson: centred x = [-1.5, -.5, .5, 1.5], y = [-.2, -.1, .2, .1] -> 0.6 / sqrt(5 * .1).
    assert metrics["pearson"] == pytest.approx(0.6 / np.sqrt(5 * 0.1))
    y_true = RNG.uniform(0, 5, size=20)
    y_pred = RNG.uniform(-1, 1, size=20)
    base = correlation_metrics(y_true, y_pred)
    shifted = correlation_metrics(y_true, 2.5 + 2.5 * y_pred)  # a linear map to label units
    assert shifted == pytest.approx(base)
    assert correlation_metrics(y_true, np.exp(3 * y_pred))["spearman"] == pytest.approx(
        base["spearman"]
    )


def test_constant_input_gives_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert correlation_metrics([0, 1, 2, 5], [3.0, 3.0, 3.0, 3.0]) == {
            "pearson": 0.0,
            "spearman": 0.0,
        }
        assert correlation_metrics([2, 2, 2], [0.1, 0.5, 0.3]) == {"pearson": 0.0, "spearman": 0.0}


def test_score_metrics_adds_mse_and_columns_are_accepted():
    y_true = np.array([[1.0], [2.0], [4.0]])
    y_pred = np.array([1.5, 2.0, 3.0])
    metrics = score_metrics(y_true, y_pred)
    assert set(metrics) == set(SCORE_METRIC_DIRECTIONS)
    assert metrics["mse"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(y_true[:, 0], y_pred).statistic)


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        ([1.0, 2.0], [1.0, 2.0, 3.0], "y_pred has shape"),
        ([1.0], [1.0], "at least 2 scores"),
        ([1.0, np.nan], [1.0, 2.0], "y_true contains NaN"),
        ([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], "y_true must be a vector"),
    ],
)
def test_bad_inputs_raise(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        correlation_metrics(y_true, y_pred)


def test_directions_of_score_metrics():
    assert {name: METRIC_DIRECTIONS[name] for name in ("pearson", "spearman", "mse")} == {
        "pearson": "max",
        "spearman": "max",
        "mse": "min",
    }
    assert is_improvement("spearman", 0.8, 0.7)
    assert is_improvement("mse", 0.5, 0.7)
    assert not is_improvement("mse", 0.7, 0.5)
