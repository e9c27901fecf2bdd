"""`regression`: one text, or a cross-encoded pair, -> head -> one bounded score
(`low + sigmoid(logit) * (high - low)`, e.g. 0-5 for STS), MSE, Pearson/Spearman."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.tasks.base import Task, TaskData, TaskSplit, encoder_features, encoder_inputs
from xtune.tasks.checks import RegressionRules, ScoreTaskRules
from xtune.tasks.registry import TASKS


@keras.saving.register_keras_serializable(package="xtune")
class BoundedScore(keras.layers.Layer):
    """`[b, 1]` logits -> `[b]` scores in `(low, high)` (`xtune.losses.mse.bounded_score`)."""

    def __init__(self, low: float = 0.0, high: float = 5.0, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, logits: Any) -> Any:
        from xtune.losses.mse import bounded_score

        return bounded_score(keras.ops.reshape(logits, (-1,)), self.low, self.high)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0],)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high}


class ScoreTask(ScoreTaskRules, Task):
    """Shared parts of tasks that predict one score per example (labels are numbers)."""

    default_loss = "mse"
    default_metric = "pearson"

    def build_loss(self) -> Any:
        from xtune.losses import get_score_loss

        spec = self.config.loss.to_dict() if self.config.loss else {"name": self.default_loss}
        return get_score_loss({**spec, "low": self.config.low, "high": self.config.high})

    def load(self, encoder: Any) -> TaskData:
        examples = load_score_splits(self.config.data)
        check_score_range(examples, self.name, self.config.low, self.config.high, self.clips_scores)
        text_encoder = self.text_encoder(encoder)
        splits = {
            name: self.tokenize(split, text_encoder, scores)
            for name, (split, scores) in examples.items()
        }
        notes = [note for split, _ in examples.values() for note in split.warnings]
        return TaskData(splits, [], notes, preparation=examples["train"][0].preparation)

    def tokenize(self, examples: Any, text_encoder: Any, scores: np.ndarray) -> TaskSplit:
        from xtune.data.pipeline import tokenize_examples

        targets = scores.reshape(-1, 1).astype(np.float32)
        cache = self.config.data.cache_dir
        return TaskSplit([tokenize_examples(examples, text_encoder, targets, cache)], targets)

    def initialize(self, model: keras.Model, data: TaskData) -> None:
        """Nothing to set: the bounded score starts at the middle of the range."""

    def evaluate(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        from xtune.metrics import score_metrics

        scores = np.asarray(self.loss.scores(outputs), dtype=np.float64)
        return score_metrics(np.asarray(targets, np.float64).reshape(-1), scores)

    def serving_outputs(self, outputs: tf.Tensor, thresholds: Any = None) -> dict[str, tf.Tensor]:
        return {"score": tf.cast(self.loss.scores(outputs), tf.float32)}

    def baseline(self, train_targets: np.ndarray, dev_targets: np.ndarray) -> dict[str, Any]:
        """`train_mean`: every pair scored the train mean (correlations 0, its `mse`)."""
        from xtune.metrics import score_metrics

        dev = np.asarray(dev_targets, np.float64).reshape(-1)
        constant = np.full(len(dev), float(np.mean(train_targets)))
        return {
            "train_mean": {"value": float(np.mean(train_targets)), **score_metrics(dev, constant)}
        }


@TASKS.register("regression")
class RegressionTask(RegressionRules, ScoreTask):
    """One text, or a pair through the cross-encoder packing when `data.text_pair` is set."""

    def build_output(self, encoder: Any, encoder_model: keras.Model) -> tuple[dict, Any]:
        from xtune.heads import get_head

        inputs = encoder_inputs(encoder, task=self.name)
        vector = get_head(self.config.head.to_dict())(encoder_features(encoder_model, inputs))
        logit = keras.layers.Dense(1, name=f"{self.name}__logit", dtype="float32")(vector)
        score = BoundedScore(self.config.low, self.config.high, name=f"{self.name}__score")
        return inputs, score(logit)


def load_score_splits(data: Any) -> dict[str, tuple[Any, np.ndarray]]:
    """train / dev / test examples with their scores (the `data.labels` column as numbers).

    `max_train_rows` keeps a seeded random subset of train; without a dev file, a seeded
    `dev_fraction` of train is dev (score labels have no classes to stratify by). Then
    `data.prepare`, learned from the train rows, prepares every split's texts.
    """
    from xtune.data.examples import prepare_examples, read_examples

    files = {"train": data.train, "dev": data.dev, "test": data.test}
    splits = {name: read_examples(data, path) for name, path in files.items() if path}
    scored = {name: (split, scores_of(split, data)) for name, split in splits.items()}
    rng = np.random.default_rng(data.split_seed)
    train, scores = scored["train"]
    if "dev" not in scored:
        order = rng.permutation(len(train))
        dev_size = math.ceil(data.dev_fraction * len(train))
        dev, kept = order[:dev_size], np.sort(order[dev_size:])
        scored["dev"] = (
            train.take(np.sort(dev), f"{train.source} (dev part)"),
            scores[np.sort(dev)],
        )
        scored["train"] = (train.take(kept, f"{train.source} (train part)"), scores[kept])
        train, scores = scored["train"]
    if data.max_train_rows is not None and len(train) > data.max_train_rows:
        kept = np.sort(rng.choice(len(train), data.max_train_rows, replace=False))
        source = f"{train.source} ({data.max_train_rows} of {len(train)} rows)"
        scored["train"] = (train.take(kept, source), scores[kept])
    if data.prepare.enabled():
        plain = {name: split for name, (split, _) in scored.items()}
        prepared, kept = prepare_examples(plain, data.prepare)
        scored = {
            name: (prepared[name], scores[kept] if name == "train" else scores)
            for name, (_, scores) in scored.items()
        }
    return scored


def check_score_range(
    scored: dict[str, tuple[Any, np.ndarray]],
    task: str,
    low: float,
    high: float,
    clip: bool = False,
) -> None:
    """Scores outside the task's `[low, high]` would be silently unreachable (the output is
    bounded to that range): one DataError naming the file, the row and the range, or, with
    `clip` (`tasks.NAME.out_of_range: clip`), set to the nearest bound in place, counted."""
    from xtune.data.readers import DataError

    for split, scores in scored.values():
        outside = np.flatnonzero((scores < low) | (scores > high))
        if not len(outside):
            continue
        first = int(outside[0])
        where = f"{split.source}: row {split.rows[first]}: score {scores[first]:g}"
        if clip:
            np.clip(scores, low, high, out=scores)
            print(
                f"xtune: task {task}: {len(outside)} score(s) outside [{low:g}, {high:g}] set "
                f"to the nearest bound (out_of_range: clip), the first {where}",
                flush=True,
            )
            continue
        raise DataError(
            f"{where} is outside the task's range [{low:g}, {high:g}] ({len(outside)} rows "
            f"outside); set tasks.{task}.low / high to the data's range, or "
            f"tasks.{task}.out_of_range: clip"
        )


def scores_of(examples: Any, data: Any) -> np.ndarray:
    """Each row's one label cell as a number; anything else is a DataError naming the row."""
    from xtune.data.readers import DataError

    scores = []
    for row, labels in zip(examples.rows, examples.label_sets, strict=True):
        try:
            if len(labels) != 1:
                raise ValueError
            score = float(labels[0])
        except ValueError:
            raise DataError(
                f"{examples.source}: row {row}: expected one number in column "
                f"{data.labels!r} (a score task), got {labels!r}"
            ) from None
        if not math.isfinite(score):
            raise DataError(f"{examples.source}: row {row}: score {score} is not finite")
        scores.append(score)
    return np.asarray(scores, np.float32)
