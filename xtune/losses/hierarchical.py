"""Losses and decision rules over the nodes of a label tree (`hierarchy.mode` of a task).

The tree comes as arrays over the task's labels (each label a node): `ancestors[i, j] = 1`
when node `j` is node `i` or one of its ancestors, and each node's level. Every function is
built from `keras.ops`, so it runs in training, in numpy evaluation and in the export.

- `CoherentCrossentropy` (`hierarchy.mode: coherent`): C-HMCNN's max-constraint module and
  loss (Giunchiglia & Lukasiewicz, "Coherent Hierarchical Multi-Label Classification
  Networks", NeurIPS 2020): a node's score is the largest sigmoid among itself and its
  descendants, so no child ever scores above its parent.
- `PerLevelCrossentropy` (`hierarchy.mode: per_level`): a softmax over each level's nodes,
  the levels' cross-entropies weighted by `level_weights`: one classifier per level on the
  shared encoder (the node logits of a level are that level's own Dense units).
- `TreeDecisions`: wraps any of these or a flat loss (`hierarchy.mode: ancestors`) with a
  decision rule that never predicts a child without its parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

from xtune.losses.checks import check_per_level_crossentropy
from xtune.losses.classification_loss import ClassificationLoss

EPSILON = 1e-7
DECODINGS = ("threshold", "best_path", "top_down")


class TreeArrays:
    """The tree over a task's labels as the arrays the functions below read."""

    def __init__(self, ancestors: np.ndarray, depths: np.ndarray):
        self.ancestors = np.asarray(ancestors, np.float32)
        self.depths = np.asarray(depths, np.int32)
        self.num_levels = int(self.depths.max()) + 1 if len(self.depths) else 0
        strict = self.ancestors - np.eye(len(self.depths), dtype=np.float32)
        # A node's parent: its ancestor one level up (-1 for a first-level node).
        self.parents = np.full(len(self.depths), -1, np.int32)
        for i, j in zip(*np.nonzero(strict), strict=True):
            if self.depths[j] == self.depths[i] - 1:
                self.parents[i] = j
        self.leaves = (strict.sum(axis=0) == 0).astype(np.float32)  # nobody's ancestor
        self.level_masks = np.stack(
            [(self.depths == level).astype(np.float32) for level in range(self.num_levels)]
        )


def max_constraint(probabilities: Any, ancestors: Any) -> Any:
    """C-HMCNN's max-constraint module: `h_i = max_j ancestors[j, i] * p_j`, the largest
    probability among node `i` and its descendants (probabilities are >= 0).

    >>> max_constraint([[0.2, 0.7]], [[1, 0], [1, 1]])   # node 1 is node 0's child
    [[0.7, 0.7]]
    """
    probabilities = ops.cast(probabilities, "float32")
    descendants = ops.transpose(ops.convert_to_tensor(ancestors, "float32"))  # [i, j]: j under i
    return ops.max(probabilities[:, None, :] * descendants[None, :, :], axis=-1)


def coherent_crossentropy(
    y_true: Any, logits: Any, ancestors: Any, label_smoothing: float = 0.0
) -> Any:
    """C-HMCNN's loss (MCLoss): binary cross-entropy of the max-constrained outputs, where a
    positive node's maximum runs over its positive descendants only:

        h = y * MCM(y * sigmoid(x)) + (1 - y) * MCM(sigmoid(x))
        loss = mean_i[ -t_i log h_i - (1 - t_i) log(1 - h_i) ],  t = y(1 - s) + s / 2

    Returns the `(batch,)` per-example loss. `y_true` holds each row's nodes with their
    ancestors (`hierarchy.mode: coherent` adds them).
    """
    y = ops.cast(y_true, "float32")
    probabilities = ops.sigmoid(ops.cast(logits, "float32"))
    constrained = max_constraint(probabilities, ancestors)
    positive = max_constraint(y * probabilities, ancestors)
    h = ops.clip((1.0 - y) * constrained + y * positive, EPSILON, 1.0 - EPSILON)
    targets = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return -ops.mean(targets * ops.log(h) + (1.0 - targets) * ops.log(1.0 - h), axis=-1)


def level_softmax(logits: Any, level_masks: Any) -> Any:
    """Each node's softmax probability among the nodes of its own level."""
    masks = ops.convert_to_tensor(level_masks, "float32")  # [levels, nodes]
    logits = ops.cast(logits, "float32")[:, None, :]
    masked = ops.where(masks[None] > 0, logits, ops.full_like(logits, -1e9))
    return ops.sum(ops.softmax(masked, axis=-1) * masks[None], axis=1)


def per_level_crossentropy(
    y_true: Any,
    logits: Any,
    level_masks: Any,
    level_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> Any:
    """The weighted sum over levels of softmax cross-entropy among that level's nodes:

        loss = sum_l w_l * [ -sum_{i in level l} t_i log softmax_l(x)_i ]

    where `t` is the row's nodes at level `l` (normalised to sum 1; smoothed towards the
    uniform over the level's nodes by `label_smoothing`). A row whose path stops above level
    `l` adds nothing for it. Returns the `(batch,)` per-example loss.
    """
    masks = ops.convert_to_tensor(level_masks, "float32")  # [levels, nodes]
    num_levels = masks.shape[0]
    weights = ops.convert_to_tensor(
        level_weights if level_weights is not None else [1.0] * num_levels, "float32"
    )
    y = ops.cast(y_true, "float32")[:, None, :] * masks[None]  # [batch, levels, nodes]
    count = ops.sum(y, axis=-1, keepdims=True)
    present = ops.cast(count[..., 0] > 0, "float32")  # [batch, levels]
    targets = y / ops.maximum(count, 1.0)
    uniform = masks / ops.sum(masks, axis=-1, keepdims=True)
    targets = targets * (1.0 - label_smoothing) + uniform[None] * label_smoothing
    x = ops.cast(logits, "float32")[:, None, :]
    masked = ops.where(masks[None] > 0, x, ops.full_like(x, -1e9))
    log_probabilities = ops.log_softmax(masked, axis=-1)
    per_level = -ops.sum(targets * log_probabilities * masks[None], axis=-1)
    return ops.sum(per_level * present * weights[None], axis=-1)


def consistent_decisions(decisions: Any, ancestors: Any) -> Any:
    """Keep a node only when every ancestor of it is kept too (top-down), int32."""
    a = ops.convert_to_tensor(ancestors, "float32")
    kept = ops.matmul(ops.cast(decisions, "float32"), ops.transpose(a))  # kept ancestors-or-self
    return ops.cast(
        ops.cast(decisions, "float32") * ops.cast(kept >= ops.sum(a, axis=1), "float32"), "int32"
    )


def best_path_decisions(scores: Any, tree: TreeArrays) -> Any:
    """The tree leaf whose path (itself and its ancestors) has the largest product of
    scores, with its ancestors: one full path a row, int32."""
    log_scores = ops.log(ops.clip(ops.cast(scores, "float32"), EPSILON, 1.0))
    path_scores = ops.matmul(log_scores, ops.transpose(ops.convert_to_tensor(tree.ancestors)))
    leaves = ops.convert_to_tensor(tree.leaves > 0)
    path_scores = ops.where(leaves[None], path_scores, ops.full_like(path_scores, -1e30))
    best = ops.argmax(path_scores, axis=-1)
    return ops.cast(ops.take(ops.convert_to_tensor(tree.ancestors), best, axis=0), "int32")


def top_down_decisions(scores: Any, tree: TreeArrays) -> Any:
    """The most probable first-level node, then its most probable child, and so on down to a
    leaf, with its ancestors, int32."""
    scores = ops.cast(scores, "float32")
    parents = ops.convert_to_tensor(tree.parents, "int32")
    chosen = ops.full_like(ops.argmax(scores, axis=-1), -1)
    for _ in range(tree.num_levels):
        allowed = ops.equal(parents[None, :], ops.cast(chosen, "int32")[:, None])
        candidates = ops.where(allowed, scores, ops.full_like(scores, -1.0))
        has_child = ops.any(allowed, axis=-1)
        chosen = ops.where(has_child, ops.argmax(candidates, axis=-1), chosen)
    return ops.cast(ops.take(ops.convert_to_tensor(tree.ancestors), chosen, axis=0), "int32")


class TreeLoss(ClassificationLoss):
    """A loss that needs the tree: `bind(tree)` before it is called (the task binds it once
    its labels are known)."""

    tree: TreeArrays | None = None

    def bind(self, tree: TreeArrays) -> None:
        self.tree = tree

    def bound(self) -> TreeArrays:
        if self.tree is None:
            raise ValueError(f"{type(self).__name__} has no label tree; bind(tree) it first")
        return self.tree


class CoherentCrossentropy(TreeLoss):
    """C-HMCNN (see `coherent_crossentropy`); scores are the max-constrained sigmoids, so a
    parent's score is never below its children's; a node is predicted above 0.5.

    Args:
        label_smoothing: in `[0, 1]`, default 0.
    """

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return coherent_crossentropy(y_true, y_pred, self.bound().ancestors, self.label_smoothing)

    def scores(self, logits: Any) -> Any:
        return max_constraint(ops.sigmoid(ops.cast(logits, "float32")), self.bound().ancestors)


class PerLevelCrossentropy(TreeLoss):
    """One softmax per level (see `per_level_crossentropy`); scores are each node's
    probability within its level; `decide` picks the most probable node of every level
    (the task's decoding makes them one path).

    Args:
        level_weights: one positive weight per level (default all 1).
        label_smoothing: in `[0, 1]`, default 0.
    """

    default_threshold = None

    check_arguments = staticmethod(check_per_level_crossentropy)

    def __init__(self, level_weights: Sequence[float] | None = None, **kwargs: Any):
        PerLevelCrossentropy.check_arguments(level_weights)
        super().__init__(**kwargs)
        self.level_weights = None if level_weights is None else [float(w) for w in level_weights]

    def bind(self, tree: TreeArrays) -> None:
        if self.level_weights is not None and len(self.level_weights) != tree.num_levels:
            raise ValueError(
                f"hierarchy.level_weights: {len(self.level_weights)} weights for a tree of "
                f"{tree.num_levels} levels; give one weight per level"
            )
        super().bind(tree)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return per_level_crossentropy(
            y_true, y_pred, self.bound().level_masks, self.level_weights, self.label_smoothing
        )

    def scores(self, logits: Any) -> Any:
        return level_softmax(logits, self.bound().level_masks)

    def decide(self, scores: Any, thresholds: Any = None) -> Any:
        if thresholds is not None:
            raise ValueError("PerLevelCrossentropy picks one node a level and takes no thresholds")
        masks = ops.convert_to_tensor(self.bound().level_masks)
        scores = ops.cast(scores, "float32")[:, None, :] * masks[None]
        best = ops.one_hot(ops.argmax(scores, axis=-1), masks.shape[-1], dtype="float32")
        return ops.cast(ops.max(best * masks[None], axis=1), "int32")


class TreeDecisions(TreeLoss):
    """`loss` (trained and scored as it is) with decisions that respect the tree:
    `threshold` (the loss's own rule, then a child only with its parent),
    `best_path` or `top_down` (one full path a row; no thresholds)."""

    def __init__(self, loss: ClassificationLoss, decoding: str = "threshold"):
        if decoding not in DECODINGS:
            raise ValueError(f"decoding: {decoding!r} is not one of: {', '.join(DECODINGS)}")
        super().__init__(label_smoothing=loss.label_smoothing, name=loss.name)
        self.loss = loss
        self.decoding = decoding
        self.multi_label = True
        self.default_threshold = loss.default_threshold if decoding == "threshold" else None

    def bind(self, tree: TreeArrays) -> None:
        super().bind(tree)
        if isinstance(self.loss, TreeLoss):
            self.loss.bind(tree)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self.loss.call(y_true, y_pred)

    def scores(self, logits: Any) -> Any:
        return self.loss.scores(logits)

    def raw_decide(self, scores: Any, thresholds: Any = None) -> Any:
        """The wrapped loss's own decisions, before the tree is applied."""
        if self.decoding != "threshold":
            thresholds = None
        if self.loss.default_threshold is None:
            return self.loss.decide(scores)
        return self.loss.decide(scores, thresholds)

    def decide(self, scores: Any, thresholds: Any = None) -> Any:
        tree = self.bound()
        if self.decoding == "threshold":
            return consistent_decisions(self.raw_decide(scores, thresholds), tree.ancestors)
        if thresholds is not None:
            raise ValueError(f"{self.decoding} decoding picks one path and takes no thresholds")
        if self.decoding == "best_path":
            return best_path_decisions(scores, tree)
        return top_down_decisions(scores, tree)
