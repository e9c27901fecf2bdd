"""Tree losses and decoding (`xtune.losses.hierarchical`) and hierarchical metrics."""

from __future__ import annotations

import numpy as np
import pytest

from xtune.data.hierarchy import path_ancestor_matrix, path_depths
from xtune.losses import BinaryCrossentropy
from xtune.losses.hierarchical import (
    CoherentCrossentropy,
    PerLevelCrossentropy,
    TreeArrays,
    TreeDecisions,
    consistent_decisions,
    max_constraint,
)
from xtune.metrics import hierarchical_metrics

LABELS = ["a", "b", "a/x", "a/y", "b/z", "a/x/p", "a/x/q"]


def tree() -> TreeArrays:
    return TreeArrays(path_ancestor_matrix(LABELS, "/"), path_depths(LABELS, "/"))


def leaf_paths() -> set[tuple[int, ...]]:
    """Each tree leaf's path as its 0/1 row over LABELS."""
    arrays = tree()
    return {tuple(arrays.ancestors[i].astype(int)) for i in np.flatnonzero(arrays.leaves)}


def test_max_constraint_example():
    np.testing.assert_allclose(
        np.asarray(max_constraint([[0.2, 0.7]], [[1, 0], [1, 1]])), [[0.7, 0.7]]
    )


def test_coherent_scores_never_put_a_child_above_its_parent():
    loss = CoherentCrossentropy()
    loss.bind(tree())
    logits = np.random.default_rng(0).normal(0, 3, (200, len(LABELS))).astype("float32")
    scores = np.asarray(loss.scores(logits))
    parents = tree().parents
    for child, parent in enumerate(parents):
        if parent >= 0:
            assert np.all(scores[:, parent] >= scores[:, child])
    wrapped = TreeDecisions(loss)
    wrapped.bind(tree())
    decisions = np.asarray(wrapped.decide(scores))
    np.testing.assert_array_equal(
        decisions, np.asarray(consistent_decisions(decisions, tree().ancestors))
    )


def test_coherent_loss_is_finite_and_lower_for_the_true_path():
    loss = CoherentCrossentropy()
    loss.bind(tree())
    y = np.asarray([[1, 0, 1, 0, 0, 1, 0]], "float32")
    good, bad = 6 * (2 * y - 1), -6 * (2 * y - 1)
    assert float(loss(y, good)) < 0.01 < float(loss(y, bad))


def test_per_level_loss_hand_computed_and_masks_missing_levels():
    loss = PerLevelCrossentropy(level_weights=[1.0, 2.0, 0.5])
    loss.bind(tree())
    logits = np.zeros((1, len(LABELS)), "float32")
    y = np.asarray([[1, 0, 1, 0, 0, 0, 0]], "float32")  # a path stopping at level 2
    # level 1: 2 nodes -> log 2; level 2: 3 nodes -> 2 log 3; level 3 absent
    assert float(loss(y, logits)) == pytest.approx(np.log(2) + 2 * np.log(3), rel=1e-5)
    scores = np.asarray(loss.scores(logits))
    np.testing.assert_allclose(
        scores, [[1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3, 1 / 2, 1 / 2]], rtol=1e-5
    )


@pytest.mark.parametrize("decoding", ["best_path", "top_down"])
@pytest.mark.parametrize("inner", ["per_level", "bce"])
def test_single_path_decoding_returns_paths_of_the_tree(decoding, inner):
    loss = TreeDecisions(
        PerLevelCrossentropy() if inner == "per_level" else BinaryCrossentropy(), decoding
    )
    loss.bind(tree())
    logits = np.random.default_rng(1).normal(0, 3, (300, len(LABELS))).astype("float32")
    decisions = np.asarray(loss.decide(loss.scores(logits)))
    assert {tuple(row) for row in decisions} <= leaf_paths()


def test_best_path_is_the_largest_product():
    loss = TreeDecisions(BinaryCrossentropy(), "best_path")
    loss.bind(tree())
    scores = np.asarray([[0.9, 0.1, 0.5, 0.6, 0.99, 0.9, 0.1]], "float32")
    # paths: a/y .54, b/z .099, a/x/p .405, a/x/q .045 -> a/y
    np.testing.assert_array_equal(np.asarray(loss.decide(scores)), [[1, 0, 0, 1, 0, 0, 0]])


def test_threshold_decoding_drops_children_of_unpredicted_parents():
    loss = TreeDecisions(BinaryCrossentropy(), "threshold")
    loss.bind(tree())
    scores = np.asarray([[0.2, 0.9, 0.8, 0.1, 0.7, 0.9, 0.1]], "float32")
    np.testing.assert_array_equal(np.asarray(loss.decide(scores)), [[0, 1, 0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(np.asarray(loss.raw_decide(scores)), [[0, 1, 1, 0, 1, 1, 0]])


def test_hierarchical_f1_hand_computed():
    nodes = ["a", "b", "a/x"]
    a, depths = path_ancestor_matrix(nodes, "/"), path_depths(nodes, "/")
    truth = [[0, 0, 1], [0, 0, 1], [1, 0, 0]]
    predicted = [[0, 1, 0], [1, 0, 0], [1, 0, 1]]
    # augmented T: {a,a/x}, {a,a/x}, {a}; P: {b}, {a}, {a,a/x}: overlap 0+1+1 = 2
    metrics = hierarchical_metrics(truth, predicted, a, depths)
    assert metrics["hierarchical_precision"] == pytest.approx(2 / 4)
    assert metrics["hierarchical_recall"] == pytest.approx(2 / 5)
    assert metrics["hierarchical_f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert metrics["level_1_accuracy"] == pytest.approx(2 / 3)  # {a} vs {b}, {a}, {a}
    assert metrics["level_2_accuracy"] == pytest.approx(0)  # rows 1-2 have a/x, both missed
    assert metrics["consistency"] == 1.0
    inconsistent = hierarchical_metrics(truth, [[0, 0, 1], [1, 0, 0], [1, 0, 0]], a, depths)
    assert inconsistent["consistency"] == pytest.approx(2 / 3)  # a/x without a


def test_hierarchical_f1_perfect_and_level_accuracy():
    nodes = ["a", "b", "a/x"]
    a, depths = path_ancestor_matrix(nodes, "/"), path_depths(nodes, "/")
    truth = [[1, 0, 1], [0, 1, 0]]
    metrics = hierarchical_metrics(truth, truth, a, depths)
    assert metrics["hierarchical_f1"] == 1.0 and metrics["consistency"] == 1.0
    assert metrics["level_1_accuracy"] == 1.0 and metrics["level_2_accuracy"] == 1.0
    half = hierarchical_metrics(truth, [[1, 0, 0], [0, 1, 0]], a, depths)
    assert half["level_1_accuracy"] == 1.0 and half["level_2_accuracy"] == 0.0
    assert half["hierarchical_recall"] == pytest.approx(2 / 3)
