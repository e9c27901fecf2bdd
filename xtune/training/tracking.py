"""`training.report_to`: a run visible in the tracking tools its users already watch
(`mlflow`: `xtune.training.mlflow_tracking`).

`tensorboard` writes `RUN/tensorboard/`: under `train/` the training loss of every step (the
epoch's running mean, as the progress bar shows it; each task's loss too in multi-task runs,
the adversarial loss with FGM/PGD) and the learning rate the step used (layer-wise rates are
this base rate times each group's multiplier, printed when the stage starts);
under `validation/` every dev metric of every epoch, the selection metric included. View with
`tensorboard --logdir runs/` (`pip install xtune[tensorboard]`); writing needs TensorFlow
only: `tf.summary.scalar` lives in the tensorboard package, so the events are written with
`tf.summary.write` and the scalar plugin's metadata, which is what `tf.summary.scalar` writes.

Why not `keras.callbacks.TensorBoard`: it counts steps from 0 in every `fit`, and a run calls
`fit` once per stage and again when resumed, so its step axis would restart; the dev metrics
are not in Keras's logs either (the run scores dev itself, `DevEvaluation`). Here a step is
`epoch x steps_per_epoch + batch`, the same in every stage and after a resume.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from xtune.training.mlflow_tracking import MlflowEpochLog, MlflowTracker, finite

TENSORBOARD_FOLDER = "tensorboard"
# TensorBoard shows a summary under its Scalars tab by this plugin name.
SCALAR_METADATA = tf.compat.v1.SummaryMetadata(
    plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


def write_scalar(tag: str, value: float, step: int) -> None:
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=SCALAR_METADATA)


class TensorBoardLog(keras.callbacks.Callback):
    """Training scalars every step and the dev metrics every epoch, as TensorBoard events."""

    def __init__(self, log_dir: Path, steps_per_epoch: int, evaluation: Any):
        super().__init__()
        self.log_dir, self.steps_per_epoch, self.evaluation = log_dir, steps_per_epoch, evaluation
        self.writers: dict[str, Any] = {}
        self.epoch = 0
        self.rate = math.nan  # the learning rate of the step in progress

    def writer(self, name: str) -> Any:
        if name not in self.writers:
            self.writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self.writers[name]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        rate = getattr(optimizer, "inner_optimizer", optimizer).learning_rate
        self.rate = float(keras.ops.convert_to_numpy(rate))  # before the step counts

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = self.epoch * self.steps_per_epoch + batch + 1
        scalars = {key: value for key, value in (logs or {}).items() if finite(value)}
        scalars["learning_rate"] = self.rate
        with self.writer("train").as_default():
            for key, value in scalars.items():
                write_scalar(key, float(value), step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = self.evaluation.history[-1] if self.evaluation.history else {}
        with self.writer("validation").as_default():
            for key, value in record.items():
                if key.startswith("val_") and finite(value):
                    write_scalar(key.removeprefix("val_"), float(value), epoch + 1)
        for writer in self.writers.values():
            writer.flush()


def tracking_callbacks(
    report_to: list[str],
    run_dir: Path,
    steps_per_epoch: int,
    evaluation: Any,
    mlflow: MlflowTracker,
) -> list[keras.callbacks.Callback]:
    """The callbacks that log the run to each tool `report_to` names (empty: none); `mlflow`
    is the run's MLflow run (`xtune.training.mlflow_tracking`)."""
    callbacks: list[keras.callbacks.Callback] = []
    if "tensorboard" in report_to:
        folder = Path(run_dir) / TENSORBOARD_FOLDER
        callbacks.append(TensorBoardLog(folder, steps_per_epoch, evaluation))
    if "mlflow" in report_to:
        callbacks.append(MlflowEpochLog(mlflow, evaluation))
    return callbacks
