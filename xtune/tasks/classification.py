"""`classification`: one text (or a cross-encoded pair) -> head -> Dense logits, with one of
the classification losses (single- or multi-label) and its decision rule: today's single-task
model as a task. `pair_classification` is the same on `[CLS] a [SEP] b [SEP]`."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.tasks.base import (
    Task,
    TaskData,
    TaskSplit,
    encoder_features,
    encoder_inputs,
    predicted_label_names,
)
from xtune.tasks.checks import ClassificationRules, PairClassificationRules
from xtune.tasks.registry import TASKS


@TASKS.register("classification")
class ClassificationTask(ClassificationRules, Task):
    """Labels from `data.labels` (single- or multi-label, as the loss says); metrics are
    `xtune.metrics.multilabel_metrics` (subset accuracy is plain accuracy for single-label)."""

    default_loss = "bce"  # the default of a config without `tasks:`
    default_metric = "subset_accuracy"
    decides_labels = True

    def build_loss(self) -> Any:
        from xtune.losses import get_loss

        spec = self.config.loss.to_dict() if self.config.loss else self.default_loss
        return get_loss(spec)

    def load(self, encoder: Any) -> TaskData:
        from xtune.data.examples import load_splits

        examples, vocab = load_splits(self.config.data)
        return self.tokenized_data(examples, vocab, encoder)

    def tokenized_data(self, examples: dict[str, Any], vocab: Any, encoder: Any) -> TaskData:
        """Every split's rows tokenized, with targets over `vocab` (which sets `labels`)."""
        from xtune.data.pipeline import tokenize_examples

        self.labels = list(vocab.names)
        text_encoder = self.text_encoder(encoder)
        splits = {}
        for name, split in examples.items():
            targets = vocab.encode(split.label_sets)
            tokenized = tokenize_examples(split, text_encoder, targets, self.config.data.cache_dir)
            splits[name] = TaskSplit([tokenized], targets)
        notes = [note for split in examples.values() for note in split.warnings]
        preparation = examples["train"].preparation
        return TaskData(splits, self.labels, notes, examples, preparation)

    def attach(self, data: TaskData) -> None:
        super().attach(data)
        if data.examples is not None:  # a grid's rows may change the loss on the same data
            self.check_label_counts(data.examples)

    def check_label_counts(self, examples: dict[str, Any]) -> None:
        check_label_counts(self.loss, examples)

    def build_output(self, encoder: Any, encoder_model: keras.Model) -> tuple[dict, Any]:
        from xtune.heads import get_head

        inputs = encoder_inputs(encoder, task=self.name)
        vector = get_head(self.config.head.to_dict())(encoder_features(encoder_model, inputs))
        # Logits stay float32 under mixed precision, as in the single-task classifier.
        logits = keras.layers.Dense(len(self.labels), name=f"{self.name}__logits", dtype="float32")(
            vector
        )
        return inputs, logits

    def initialize(self, model: keras.Model, data: TaskData) -> None:
        """The logits bias at the labels' prior (`xtune.model.initialize_logits_bias`)."""
        self.initialize_logits(model, data.splits["train"].targets, f"{self.name}__logits")

    def initialize_logits(self, model: keras.Model, targets: np.ndarray, layer: str) -> None:
        from xtune.model import initialize_logits_bias

        initialize_logits_bias(model, targets, self.loss.multi_label, layer)

    def evaluate(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        from xtune.metrics import scores_of

        return self.evaluate_scores(targets, scores_of(self.loss, outputs))

    def evaluate_scores(
        self, targets: np.ndarray, scores: np.ndarray, thresholds: Any = None
    ) -> dict[str, float]:
        """The metrics of the labels `thresholds` pick from `scores` (None: the loss's own
        rule); the run scores tuned thresholds with it, so they get every metric too."""
        from xtune.metrics import evaluate_scores

        return evaluate_scores(self.loss, targets, scores, thresholds)

    def baseline(self, train_targets: np.ndarray, dev_targets: np.ndarray) -> dict[str, Any]:
        """The most frequent label set and the most frequent label (`majority_baseline`)."""
        from xtune.metrics import majority_baseline

        return majority_baseline(train_targets, dev_targets)

    def serving_outputs(self, outputs: tf.Tensor, thresholds: Any = None) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(self.loss.scores(outputs), tf.float32)
        predictions = tf.cast(self.loss.decide(probabilities, thresholds), tf.int32)
        names = tf.constant(self.labels)
        return {
            "probabilities": probabilities,
            "predictions": predictions,
            "labels": predicted_label_names(probabilities, predictions, names),
        }


@TASKS.register("pair_classification")
class PairClassificationTask(PairClassificationRules, ClassificationTask):
    """A cross-encoder over `text` and `text_pair`: `[CLS] a [SEP] b [SEP]` (the encoder's own
    pair packing), then as `classification`; softmax cross-entropy by default."""

    default_loss = "softmax_ce"

    def evaluate(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        """The classification metrics and, for two single-label classes, `positive_f1`: the
        F1 of the positive class (`positive_label`), what binary pair benchmarks report."""
        from xtune.metrics import scores_of

        metrics = super().evaluate(targets, outputs)
        positive = self.positive_label()
        if positive is not None:
            predictions = np.asarray(self.loss.decide(scores_of(self.loss, outputs)))
            metrics["positive_f1"] = binary_f1(targets[:, positive], predictions[:, positive])
        return metrics

    def baseline(self, train_targets: np.ndarray, dev_targets: np.ndarray) -> dict[str, Any]:
        """The majority class (`majority_baseline`), with `positive_f1` for two classes."""
        baselines = super().baseline(train_targets, dev_targets)
        positive = self.positive_label()
        if positive is None:
            return baselines
        majority = int(np.argmax(np.asarray(train_targets).sum(axis=0)))
        constant = np.full(len(dev_targets), int(majority == positive))
        for metrics in baselines.values():
            metrics["positive_f1"] = binary_f1(dev_targets[:, positive], constant)
        return baselines

    def positive_label(self) -> int | None:
        """The positive class of two single-label classes: the one named `1`, `true`, `yes`
        or `positive` (any case), else the second in label order; None otherwise."""
        if len(self.labels) != 2 or self.loss.multi_label:
            return None
        names = [str(label).lower() for label in self.labels]
        for name in ("1", "true", "yes", "positive"):
            if name in names:
                return names.index(name)
        return 1


def binary_f1(targets: np.ndarray, predictions: np.ndarray) -> float:
    """F1 of one class from 0/1 vectors (0 when it is neither true nor predicted)."""
    targets, predictions = np.asarray(targets, np.int64), np.asarray(predictions, np.int64)
    denominator = targets.sum() + predictions.sum()
    return float(2 * (targets * predictions).sum() / denominator) if denominator else 0.0


def check_label_counts(loss: Any, examples: dict[str, Any]) -> None:
    """A single-label loss needs exactly one label in every row of every split."""
    from xtune.data.readers import DataError

    if loss.multi_label:
        return
    for name, split in examples.items():
        for row, labels in zip(split.rows, split.label_sets, strict=True):
            if len(labels) != 1:
                found = (
                    f"{len(labels)} labels"
                    if labels
                    else "no label (an empty or NaN label cell, or only labels not in train, "
                    "dropped by data.unknown_labels: ignore_labels; skip_rows drops such rows)"
                )
                raise DataError(
                    f"{split.source}: row {row}: the loss {type(loss).__name__} is single-label "
                    f"(exactly one label a row) but the row has {found} ({name} split)"
                )
