"""The task contract: what one named task of a run owns.

A task owns its data columns (which files, `text` / `text_pair`, labels or scores), its
output (the head on the shared encoder's features and the output layer), its loss, its
metrics and selection metric, its decision rule (labels from logits, or a score), what it
records in the run folder (`record`), and its export signature (`serving_outputs`).

The shared encoder is one functional sub-model (`xtune.model.encoder_features_model`);
every task calls it on its own inputs, so all tasks train one set of encoder weights.

Heavy imports (data readers, which read `xtune.config`) happen inside methods: this
package is imported by `xtune.config` for validation and must not import it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.metrics import METRIC_DIRECTIONS
from xtune.tasks.checks import TaskRules


@dataclass
class TaskSplit:
    """One split of one task: token ids per input side (one side; a bi-encoder's two) and
    the targets, `[rows, k]` float32 (multi-hot labels, or `[rows, 1]` scores)."""

    sides: list[Any]  # xtune.data.pipeline.TokenizedSplit, one per side
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class TaskData:
    splits: dict[str, TaskSplit]  # train, dev, test when given
    labels: list[str]  # label names; [] for score tasks
    warnings: list[str]
    examples: dict[str, Any] | None = None  # the read rows per split (classification tasks)
    # The `data.prepare` the texts went through, learned from train (None: used as read):
    # a `xtune.data.preparation.TextPreparation`, with its report.
    preparation: Any = None
    summary: dict[str, Any] | None = None  # what the data are, for records (an mlm corpus)


class Task(TaskRules):
    """Base class of the task types registered in `TASKS` (see the module docstring); what a
    config may set comes from `TaskRules` (`xtune.tasks.checks`)."""

    default_loss = "softmax_ce"
    default_metric = "subset_accuracy"
    sides: tuple[str, ...] = ("",)  # input-name prefixes: one side, or a bi-encoder's a_, b_
    decides_labels = False  # outputs are logits of `labels` (thresholds, majority baseline)

    @property
    def clips_scores(self) -> bool:
        """`out_of_range: clip`: labels outside `[low, high]` are set to the nearest bound."""
        return self.config.out_of_range == "clip"

    def __init__(self, name: str, config: Any):
        self.name = name
        self.config = config
        self.weight = float(config.weight)
        self.metric = config.metric or self.default_metric
        self.direction = METRIC_DIRECTIONS[self.metric]
        self.loss = self.build_loss()
        self.labels: list[str] = []
        self.embedding: Any = None  # a sentence-vector tensor, for tasks with an `embed` view
        self.preparation: Any = None  # the data's TextPreparation (None: texts used as read)

    # ------------------------------------------------------------ parts a subclass gives

    def build_loss(self) -> Any:
        raise NotImplementedError

    def load(self, encoder: Any) -> TaskData:
        """Read and tokenize this task's splits; sets `self.labels`."""
        raise NotImplementedError

    def build_output(self, encoder: Any, encoder_model: keras.Model) -> tuple[dict, Any]:
        """(this task's `keras.Input`s by name, its output tensor) on the shared encoder."""
        raise NotImplementedError

    def required_token_ids(self, tokenizer: Any) -> list[int]:
        """Ids a trimmed vocabulary must keep besides the data's (an mlm task's mask token)."""
        return []

    def attach(self, data: TaskData) -> None:
        """Take the labels of data loaded (perhaps by another run of a grid) for this task,
        and check what this task's settings need of it."""
        self.labels = list(data.labels)
        self.preparation = data.preparation

    def initialize(self, model: keras.Model, data: TaskData) -> None:
        """Set output weights from the training data (e.g. a logits bias at the prior)."""

    def evaluate(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def baseline(self, train_targets: np.ndarray, dev_targets: np.ndarray) -> dict[str, Any]:
        """Dev metrics of constant predictors fitted on train (metrics.json's `baseline`): a
        model that does not beat them learned nothing beyond the prior."""
        return {}

    def serving_outputs(self, outputs: tf.Tensor, thresholds: Any = None) -> dict[str, tf.Tensor]:
        """The export signature's outputs from the model output, by the decision rule: with
        `thresholds` (the run's tuned per-label ones) where the task decides labels by them,
        else its loss's own rule."""
        raise NotImplementedError

    # ------------------------------------------------------------ shared machinery

    def text_encoder(self, encoder: Any) -> Any:
        """The TextEncoder of this task's data settings (encoders with the same settings
        share one traced graph: `xtune.data.tokenization.traced_encoder`)."""
        from xtune.data.tokenization import TextEncoder

        data = self.config.data
        return TextEncoder(
            encoder.tokenizer, encoder.packing, data.max_length, data.truncation, data.head_tokens
        )

    def input_names(self, encoder: Any) -> list[str]:
        return [f"{side}{name}" for side in self.sides for name in encoder.input_names]

    def record(self) -> dict[str, Any]:
        """What the run folder (tasks.json) and the export metadata keep of this task: its
        type, labels, selection metric and input columns (`xtune predict --task` reads them)."""
        data = self.config.data
        return {
            "type": self.type_name,
            "labels": self.labels,
            "metric": self.metric,
            "columns": {"text": data.text, "text_pair": data.text_pair},
        }

    def compute_loss(self, targets: Any, outputs: Any) -> Any:
        return self.weight * self.loss(targets, outputs)

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
        """Batches of `(inputs, targets)`; one side goes through `make_dataset` (bucketing)."""
        from xtune.data.pipeline import make_dataset

        data = self.config.data
        side = split.sides[0]
        side = type(side)(side.token_ids, side.segment_ids, side.row_splits, split.targets)
        return make_dataset(
            side,
            batch_size,
            padding or data.padding,
            data.max_length,
            shuffle=shuffle,
            seed=seed,
            indices=indices,
            with_labels=with_labels,
            max_buckets=max_buckets,
        )

    def predict(self, model: keras.Model, split: TaskSplit, batch_size: int) -> np.ndarray:
        """The task model's outputs for a split, in row order (length-sorted batches)."""
        from xtune.data.pipeline import length_sorted_order

        order = length_sorted_order(split.sides[0])
        dataset = self.dataset(
            split, batch_size, False, 0, indices=order, with_labels=False, padding="dynamic"
        )
        outputs = None
        start = 0
        for inputs in dataset:
            batch = np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
            if outputs is None:
                outputs = np.zeros((len(split), *batch.shape[1:]), np.float32)
            outputs[order[start : start + len(batch)]] = batch
            start += len(batch)
        return outputs

    @property
    def line_metrics(self) -> tuple[str, ...]:
        """The metrics the epoch and summary lines show: the selection metric."""
        return (self.metric,)

    def selection_value(self, metrics: dict[str, float]) -> float:
        """The selection metric, signed so that larger is better."""
        value = metrics[self.metric]
        return value if self.direction == "max" else -value


def encoder_inputs(encoder: Any, prefix: str = "", task: str = "") -> dict[str, Any]:
    """`keras.Input`s for the encoder's inputs, keyed `prefix + name`; the layer names carry
    the task too, as one functional model holds every task's inputs."""
    return {
        f"{prefix}{name}": keras.Input(shape=(None,), dtype="int32", name=f"{task}__{prefix}{name}")
        for name in encoder.input_names
    }


def encoder_features(encoder_model: keras.Model, inputs: dict[str, Any], prefix: str = "") -> dict:
    """The shared encoder's features for one side's inputs (keys `prefix + name`), with the
    side's `padding_mask` (heads and pooling read it)."""
    plain = {
        name.removeprefix(prefix): value
        for name, value in inputs.items()
        if name.startswith(prefix)
    }
    features = dict(encoder_model(plain))
    features["padding_mask"] = plain["padding_mask"]
    return features


def predicted_label_names(
    probabilities: tf.Tensor, predictions: tf.Tensor, label_names: tf.Tensor
) -> tf.Tensor:
    """Names of the predicted labels per row, most probable first, padded with ""."""
    order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
    chosen = tf.gather(predictions, order, batch_dims=1) > 0
    names = tf.gather(label_names, order)
    return tf.ragged.boolean_mask(names, chosen).to_tensor(default_value="")
