"""A classification task over hierarchical labels (`hierarchy.mode`, `data.label_hierarchy`).

Every label is a node named by its full path (`城乡建设/住房/物业`, `xtune.data.hierarchy`),
so a run folder's labels.json alone gives the tree back. The modes:

- `leaves`: flat over the nodes where rows' paths end; a predicted label is a path.
- `ancestors`: flat over every node; each row's targets hold its nodes and their ancestors;
  the task's loss as configured (multi-label).
- `per_level`: as `ancestors`, trained by one softmax per level (`PerLevelCrossentropy`).
- `coherent`: as `ancestors`, with C-HMCNN's max-constraint output and loss.

Decisions of the last three never keep a child without its parent (`TreeDecisions`); metrics
add per-level and hierarchical ones (`xtune.metrics.hierarchical_metrics`); the export adds
`paths`, `level_labels` and `level_probabilities` to the signature's outputs.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.data.hierarchy import LabelTree, path_ancestor_matrix, path_depths
from xtune.losses.hierarchical import (
    CoherentCrossentropy,
    PerLevelCrossentropy,
    TreeArrays,
    TreeDecisions,
    TreeLoss,
    consistent_decisions,
)
from xtune.tasks.base import TaskData, predicted_label_names
from xtune.tasks.checks import hierarchy_mode
from xtune.tasks.classification import ClassificationTask

NODE_MODES = ("ancestors", "per_level", "coherent")


def label_closure(labels: list[str], separator: str) -> tuple[list[str], np.ndarray]:
    """Every node on the paths of `labels` (ancestors first) and `E[i, k] = 1` when node `k`
    is label `i` or an ancestor of it."""
    nodes: list[str] = []
    for label in labels:
        names = label.split(separator)
        for depth in range(1, len(names) + 1):
            node = separator.join(names[:depth])
            if node not in nodes:
                nodes.append(node)
    first_seen = {node: k for k, node in enumerate(nodes)}
    nodes.sort(key=lambda node: (node.count(separator), first_seen[node]))
    index = {node: k for k, node in enumerate(nodes)}
    expansion = np.zeros((len(labels), len(nodes)), np.float32)
    for i, label in enumerate(labels):
        names = label.split(separator)
        for depth in range(1, len(names) + 1):
            expansion[i, index[separator.join(names[:depth])]] = 1.0
    return nodes, expansion


class HierarchicalClassificationTask(ClassificationTask):
    """`classification` with a label tree (see the module docstring); `build_tasks` makes one
    for a classification task whose `hierarchy.mode` (or `data.label_hierarchy`) is set."""

    def __init__(self, name: str, config: Any):
        self.mode = hierarchy_mode(config)
        self.separator = config.data.label_path_separator
        self.tree: TreeArrays | None = None
        super().__init__(name, config)

    def build_loss(self) -> Any:
        flat = super().build_loss()
        if self.mode == "leaves":
            return flat
        hierarchy = self.config.hierarchy
        if self.mode == "coherent":
            inner = CoherentCrossentropy(label_smoothing=flat.label_smoothing)
        elif self.mode == "per_level":
            inner = PerLevelCrossentropy(
                hierarchy.level_weights, label_smoothing=flat.label_smoothing
            )
        else:
            inner = flat
        decoding = hierarchy.decoding
        if decoding == "auto":
            decoding = "best_path" if self.mode == "per_level" else "threshold"
        return TreeDecisions(inner, decoding)

    # ------------------------------------------------------------ data

    def load(self, encoder: Any) -> TaskData:
        from xtune.data.examples import load_splits
        from xtune.data.labels import LabelVocab

        examples, _ = load_splits(self.config.data)
        examples = {name: self.node_examples(split) for name, split in examples.items()}
        vocab = LabelVocab(self.ordered_nodes(examples["train"].label_sets))
        examples = {name: self.known_nodes(split, vocab) for name, split in examples.items()}
        return self.tokenized_data(examples, vocab, encoder)

    def node_examples(self, split: Any) -> Any:
        """The split with each label checked as a path; in node modes with its ancestors."""
        from xtune.data.readers import DataError

        tree = LabelTree(self.separator)
        label_sets = []
        for row, labels in zip(split.rows, split.label_sets, strict=True):
            nodes: list[str] = []
            for label in labels:
                try:
                    names = tree.split(label)
                except ValueError as error:
                    raise DataError(f"{split.source}: row {row}: {error}") from None
                path = self.separator.join(names)
                chain = [self.separator.join(names[: d + 1]) for d in range(len(names))]
                nodes += chain if self.mode in NODE_MODES else [path]
            label_sets.append(list(dict.fromkeys(nodes)))
        return dataclasses.replace(split, label_sets=label_sets)

    def ordered_nodes(self, label_sets: list[list[str]]) -> list[str]:
        """Train's nodes by level, then frequency, then name (stable across runs)."""
        counts = Counter(node for nodes in label_sets for node in nodes)
        return sorted(counts, key=lambda n: (n.count(self.separator), -counts[n], n))

    def known_nodes(self, split: Any, vocab: Any) -> Any:
        """Nodes train lacks (a path's new branch, kept by unknown_labels) are dropped."""
        label_sets = [[node for node in nodes if node in vocab] for nodes in split.label_sets]
        return dataclasses.replace(split, label_sets=label_sets)

    # ------------------------------------------------------------ model

    def build_output(self, encoder: Any, encoder_model: keras.Model) -> tuple[dict, Any]:
        self.bind_tree()
        return super().build_output(encoder, encoder_model)

    def bind_tree(self) -> TreeArrays:
        """The tree over `self.labels` (paths), bound into the loss."""
        if self.tree is None or len(self.tree.depths) != len(self.labels):
            self.tree = TreeArrays(
                path_ancestor_matrix(self.labels, self.separator),
                path_depths(self.labels, self.separator),
            )
            if isinstance(self.loss, TreeLoss):
                self.loss.bind(self.tree)
        return self.tree

    def record(self) -> dict[str, Any]:
        nodes, _ = label_closure(self.labels, self.separator)
        levels = max((node.count(self.separator) for node in nodes), default=0) + 1
        hierarchy = {"mode": self.mode, "separator": self.separator, "levels": levels}
        if isinstance(self.loss, TreeDecisions):
            hierarchy["decoding"] = self.loss.decoding
        return {**super().record(), "hierarchy": hierarchy}

    # ------------------------------------------------------------ decisions and metrics

    def evaluate_scores(
        self, targets: np.ndarray, scores: np.ndarray, thresholds: Any = None
    ) -> dict[str, float]:
        """The flat metrics over the nodes plus per-level and hierarchical ones; `consistency`
        is the share of rows whose decisions before the tree is applied keep no child without
        its parent."""
        from xtune.metrics import hierarchical_metrics

        self.bind_tree()
        metrics = super().evaluate_scores(targets, scores, thresholds)
        predictions = np.asarray(self.loss.decide(scores, thresholds))
        raw = predictions
        if isinstance(self.loss, TreeDecisions):
            raw = np.asarray(self.loss.raw_decide(scores, thresholds))
        consistent = np.asarray(consistent_decisions(raw, self.tree.ancestors))
        nodes, expansion = label_closure(self.labels, self.separator)
        depths = path_depths(nodes, self.separator)
        node_ancestors = path_ancestor_matrix(nodes, self.separator)
        metrics.update(
            hierarchical_metrics(
                (targets @ expansion > 0).astype(np.int64),
                (predictions @ expansion > 0).astype(np.int64),
                node_ancestors,
                depths,
                consistent=np.all(consistent == raw, axis=1),
            )
        )
        return metrics

    def serving_outputs(self, outputs: tf.Tensor, thresholds: Any = None) -> dict[str, tf.Tensor]:
        """The flat outputs plus `paths` (the predicted nodes no predicted node lies under,
        most probable first), and along the most probable of them `level_labels` (the name
        at each level, "" below its end) and `level_probabilities`."""
        self.bind_tree()
        served = super().serving_outputs(outputs, thresholds)
        probabilities, predictions = served["probabilities"], served["predictions"]
        nodes, expansion = label_closure(self.labels, self.separator)
        strict = tf.constant(self.tree.ancestors - np.eye(len(self.labels), dtype=np.float32))
        below = tf.matmul(tf.cast(predictions, tf.float32), strict)  # predicted under a label?
        ends = tf.cast(tf.cast(predictions, tf.bool) & (below == 0), tf.int32)
        names = tf.constant(self.labels)
        served["paths"] = predicted_label_names(probabilities, ends, names)
        table, node_table = self.level_tables(nodes)
        best = tf.argmax(tf.where(ends > 0, probabilities, -1.0), axis=-1, output_type=tf.int32)
        found = tf.reduce_any(ends > 0, axis=-1)
        level_labels = tf.gather(tf.constant(table), best)
        served["level_labels"] = tf.where(found[:, None], level_labels, "")
        node_probabilities = self.node_probabilities(probabilities, expansion)
        columns = tf.gather(tf.constant(node_table), best)  # [batch, levels], -1 past the end
        level_probabilities = tf.gather(node_probabilities, tf.maximum(columns, 0), batch_dims=1)
        keep = found[:, None] & (columns >= 0)
        served["level_probabilities"] = tf.where(keep, level_probabilities, 0.0)
        return served

    def level_tables(self, nodes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per label: its names by level ("" past its end) and its nodes' indices (-1)."""
        levels = max(node.count(self.separator) for node in nodes) + 1
        index = {node: k for k, node in enumerate(nodes)}
        names = np.full((len(self.labels), levels), "", dtype=object)
        columns = np.full((len(self.labels), levels), -1, np.int32)
        for i, label in enumerate(self.labels):
            parts = label.split(self.separator)
            for depth in range(len(parts)):
                names[i, depth] = parts[depth]
                columns[i, depth] = index[self.separator.join(parts[: depth + 1])]
        return names.astype(str), columns

    def node_probabilities(self, probabilities: tf.Tensor, expansion: np.ndarray) -> tf.Tensor:
        """Each node's probability: the label's own in node modes; in `leaves` mode the sum
        over the labels under it (single-label losses) or their largest (multi-label)."""
        if self.mode in NODE_MODES:
            return probabilities
        weights = tf.constant(expansion)  # [labels, nodes]
        if not self.loss.multi_label:
            return tf.minimum(tf.matmul(probabilities, weights), 1.0)
        return tf.reduce_max(probabilities[:, :, None] * weights[None], axis=1)
