"""`bi_encoder` (Sentence-BERT): the shared encoder embeds `text` and `text_pair` separately;
each sentence vector is the mask-aware mean of its token states (`pooling: mean`, default)
or the [CLS] state. Then either

- `output: classifier`: `PairFeatures(parts)` -> optional MLP (`units`) -> Dense logits, with a
  classification loss (softmax cross-entropy by default); or
- `output: cosine`: `CosineScore` of the two vectors, with a score loss: `cosine` (default),
  `cosent`, or `mse` on the cosine mapped to label units (`low + (cos + 1) / 2 * (high - low)`).

Reimers & Gurevych 2019, https://arxiv.org/abs/1908.10084
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.tasks.base import TaskData, TaskSplit, encoder_features, encoder_inputs
from xtune.tasks.checks import BiEncoderRules
from xtune.tasks.classification import ClassificationTask
from xtune.tasks.registry import TASKS
from xtune.tasks.regression import ScoreTask, check_score_range, load_score_splits

SIDES = ("a_", "b_")


@keras.saving.register_keras_serializable(package="xtune")
class CosineToScore(keras.layers.Layer):
    """cos in [-1, 1] -> label units, `low + (cos + 1) / 2 * (high - low)` (for `mse`)."""

    def __init__(self, low: float = 0.0, high: float = 5.0, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, cosine: Any) -> Any:
        return self.low + (cosine + 1.0) / 2.0 * (self.high - self.low)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high}


def sentence_vector(features: dict[str, Any], pooling: str) -> Any:
    from xtune.heads.pair import masked_mean_pool

    states = features["sequence_output"]
    if pooling == "cls":
        return states[:, 0, :]
    return masked_mean_pool(states, features["padding_mask"])


@TASKS.register("bi_encoder")
class BiEncoderTask(BiEncoderRules, ClassificationTask):
    """See the module docstring. The config's `head` is not used (the pair head is fixed)."""

    default_loss = "softmax_ce"
    sides = SIDES

    def __init__(self, name: str, config: Any):
        self.cosine = config.output == "cosine"
        super().__init__(name, config)
        if self.cosine:
            self.metric = config.metric or ScoreTask.default_metric
            from xtune.metrics import METRIC_DIRECTIONS

            self.direction = METRIC_DIRECTIONS[self.metric]

    def build_loss(self) -> Any:
        if not self.cosine:
            return super().build_loss()
        from xtune.losses import get_score_loss

        spec = self.config.loss.to_dict() if self.config.loss else {"name": "cosine"}
        return get_score_loss({**spec, "low": self.config.low, "high": self.config.high})

    # ------------------------------------------------------------ data

    def load(self, encoder: Any) -> TaskData:
        text_encoder = self.text_encoder(encoder)
        if self.cosine:
            scored = load_score_splits(self.config.data)
            check_score_range(
                scored, self.name, self.config.low, self.config.high, self.clips_scores
            )
            splits = {
                name: self.tokenize_sides(split, text_encoder, scores.reshape(-1, 1))
                for name, (split, scores) in scored.items()
            }
            notes = [note for split, _ in scored.values() for note in split.warnings]
            return TaskData(splits, [], notes, preparation=scored["train"][0].preparation)
        from xtune.data.examples import load_splits

        examples, vocab = load_splits(self.config.data)
        self.check_label_counts(examples)
        self.labels = list(vocab.names)
        splits = {
            name: self.tokenize_sides(split, text_encoder, vocab.encode(split.label_sets))
            for name, split in examples.items()
        }
        notes = [note for split in examples.values() for note in split.warnings]
        return TaskData(splits, self.labels, notes, preparation=examples["train"].preparation)

    def tokenize_sides(self, examples: Any, text_encoder: Any, targets: np.ndarray) -> TaskSplit:
        """`text` and `text_pair` tokenized each as one segment."""
        from xtune.data.pipeline import tokenize_examples

        targets = np.asarray(targets, np.float32)
        first = dataclasses.replace(examples, pairs=None)
        second = dataclasses.replace(examples, texts=examples.pairs, pairs=None)
        cache = self.config.data.cache_dir
        sides = [tokenize_examples(part, text_encoder, targets, cache) for part in (first, second)]
        return TaskSplit(sides, targets)

    def dataset(
        self,
        split: TaskSplit,
        batch_size: int,
        shuffle: bool,
        seed: int,
        indices: np.ndarray | None = None,
        with_labels: bool = True,
        padding: str | None = None,
        max_buckets: int | None = None,
    ) -> tf.data.Dataset:
        """Batches of `({a_token_ids, ..., b_token_ids, ...}, targets)`, each side padded to
        its longest row in the batch (no bucketing: two lengths per row; `max_buckets` unused)."""
        order = np.arange(len(split)) if indices is None else np.asarray(indices)
        columns = []
        for side in split.sides:
            tokens, segments = side.ragged()
            columns.append(tokens)
            columns.append(tokens * 0 if segments is None else segments)
        has_segments = split.sides[0].segment_ids is not None
        targets = tf.constant(split.targets)
        dataset = tf.data.Dataset.from_tensor_slices(order)
        if shuffle:
            dataset = dataset.shuffle(len(order), seed=seed, reshuffle_each_iteration=True)

        def row(index: tf.Tensor) -> tuple:
            return (*(column[index] for column in columns), targets[index])

        dataset = dataset.map(row, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        padded = tuple([None] for _ in columns) + ([split.targets.shape[1]],)
        values = tuple(tf.constant(v, tf.int32) for v in (-1, 0, -1, 0)) + (tf.constant(0.0),)
        dataset = dataset.padded_batch(batch_size, padded_shapes=padded, padding_values=values)

        def finish(ta, sa, tb, sb, y):
            inputs = {}
            for prefix, tokens, segments in (("a_", ta, sa), ("b_", tb, sb)):
                inputs[f"{prefix}token_ids"] = tf.maximum(tokens, 0)
                if has_segments:
                    inputs[f"{prefix}segment_ids"] = segments
                inputs[f"{prefix}padding_mask"] = tf.cast(tokens >= 0, tf.int32)
            return (inputs, y) if with_labels else inputs

        return dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)

    # ------------------------------------------------------------ model

    def side_vectors(self, encoder_model: keras.Model, inputs: dict[str, Any]) -> list[Any]:
        return [
            sentence_vector(encoder_features(encoder_model, inputs, side), self.config.pooling)
            for side in SIDES
        ]

    def build_output(self, encoder: Any, encoder_model: keras.Model) -> tuple[dict, Any]:
        from xtune.heads.pair import CosineScore, PairFeatures

        inputs = {}
        for side in SIDES:
            inputs.update(encoder_inputs(encoder, side, task=self.name))
        u, v = self.side_vectors(encoder_model, inputs)
        self.embedding = u  # the `embed` view: a_ side's text -> sentence vector
        if self.cosine:
            cosine = CosineScore(name=f"{self.name}__cosine")([u, v])
            if self.loss.model_output == "score":
                cosine = CosineToScore(self.config.low, self.config.high)(cosine)
            return inputs, cosine
        vector = PairFeatures(self.config.parts, name=f"{self.name}__pair_features")([u, v])
        for index, units in enumerate(self.config.units):
            dense = keras.layers.Dense(units, activation="gelu", name=f"{self.name}__mlp{index}")
            vector = dense(vector)
        logits = keras.layers.Dense(len(self.labels), name=f"{self.name}__logits", dtype="float32")(
            vector
        )
        return inputs, logits

    def embed_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The `a_` side's inputs: what the `embed` model (text -> vector) takes."""
        return {name: value for name, value in inputs.items() if name.startswith("a_")}

    @property
    def decides_labels(self) -> bool:  # type: ignore[override]
        return not self.cosine

    def initialize(self, model: keras.Model, data: TaskData) -> None:
        if not self.cosine:
            super().initialize(model, data)

    def evaluate(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        if self.cosine:
            return ScoreTask.evaluate(self, targets, outputs)
        return super().evaluate(targets, outputs)

    def baseline(self, train_targets: np.ndarray, dev_targets: np.ndarray) -> dict[str, Any]:
        if self.cosine:
            return ScoreTask.baseline(self, train_targets, dev_targets)
        return super().baseline(train_targets, dev_targets)

    def serving_outputs(self, outputs: tf.Tensor, thresholds: Any = None) -> dict[str, tf.Tensor]:
        if self.cosine:
            return ScoreTask.serving_outputs(self, outputs)
        return super().serving_outputs(outputs, thresholds)

    def record(self) -> dict[str, Any]:
        return {**super().record(), "output": self.config.output}
