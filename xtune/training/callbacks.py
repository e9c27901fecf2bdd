"""The callbacks of `fit`: per-epoch dev evaluation of every task, the divergence guard, and
the first-step timer."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import keras
import numpy as np

from xtune.faults import fault_point
from xtune.interrupts import raise_pending
from xtune.training.checkpoint import (
    Progress,
    state_file_name,
    variable_arrays,
    write_checkpoint,
)
from xtune.training.diverged import TrainingDiverged
from xtune.training.ema import ema_weights
from xtune.training.task_batches import Schedule

# A training loss over DIVERGENCE_FACTOR x the run's first-step loss (with the prior-initialised
# logits bias that is about the labels' entropy) and over DIVERGENCE_FLOOR is divergence, not
# noise; so is a non-finite one.
DIVERGENCE_FACTOR = 100.0
DIVERGENCE_FLOOR = 10.0
ADVICE = "lower the learning rate or set optimizer.clipnorm"


class FirstStepTimer(keras.callbacks.Callback):
    """Records when the first training step (tracing included) ends."""

    def __init__(self) -> None:
        super().__init__()
        self.first_step_done: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.first_step_done is None:
            self.first_step_done = time.perf_counter()


class DivergenceGuard(keras.callbacks.Callback):
    """Raises `TrainingDiverged`, naming the epoch and the learning rate, at the first step
    whose running training loss is non-finite or beyond the bound above.

    `keras.callbacks.TerminateOnNaN` stops on NaN / inf only, and says neither where nor why.
    """

    def __init__(self, learning_rate: str):
        super().__init__()
        self.learning_rate = learning_rate
        self.first_loss: float | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = loss
        bound = max(DIVERGENCE_FACTOR * (self.first_loss or 0.0), DIVERGENCE_FLOOR)
        if math.isfinite(loss) and loss <= bound:
            return
        why = (
            "is non-finite"
            if not math.isfinite(loss)
            else f"exceeds {bound:.4g} (max of {DIVERGENCE_FACTOR:g} x the first step's "
            f"{self.first_loss:.4g} and {DIVERGENCE_FLOOR:g})"
        )
        raise TrainingDiverged(
            f"training diverged in epoch {self.epoch + 1}, step {batch + 1}: the training loss "
            f"{loss:.4g} {why}; {self.learning_rate}: {ADVICE}"
        )


class DevEvaluation(keras.callbacks.Callback):
    """After each epoch: every task's dev metrics and the weighted mean of their selection
    metrics (weights `tasks.<name>.weight`); keeps the best epoch's weights and dev outputs
    (thresholds are tuned on them) and stops after `training.early_stopping_patience` epochs
    without a better mean.

    Why not Keras's `EarlyStopping(restore_best_weights=True)`: it resets its best epoch and
    weights at the start of every `fit`, and a run with `finetune.frozen_epochs` calls `fit`
    once per stage; it also watches one logged value, not a mean over tasks. Why not
    `SwapEMAWeights`: `ema_weights` does the same copy, scoped to the evaluation, so with
    `use_ema` the best-weights snapshot holds the averages and training resumes on bitwise
    the same values.

    `names` (`MetricNames`) says how the history names a task's metrics: a config without
    `tasks:` keeps the names it always had (`val_micro_f1`), named tasks `val_<task>.<key>`.
    """

    def __init__(
        self,
        tasks: list[Any],
        views: dict[str, keras.Model],
        dev: dict[str, Any],
        names: Any,
        schedule: Schedule,
        training: Any,
        learning_rate: str,
    ):
        super().__init__()
        self.tasks, self.views, self.dev, self.names = tasks, views, dev, names
        self.schedule = schedule
        self.batch_size = training.eval_batch_size
        self.patience = training.early_stopping_patience
        self.learning_rate = learning_rate
        self.history: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.best_metrics: dict[str, dict[str, float]] = {}
        self.best_outputs: dict[str, np.ndarray] = {}  # dev outputs of `best_weights`
        self.epoch_started = 0.0
        self.epoch_line = ""  # the last epoch's summary; `EpochLines` prints it

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.perf_counter()
        frozen = self.schedule.epochs[epoch].frozen
        if frozen:
            names = ", ".join(self.tasks[i].name for i in frozen)
            print(f"epoch {epoch + 1}: head only (encoder not trained by) {names}", flush=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        train_seconds = time.perf_counter() - self.epoch_started
        # With `optimizer.use_ema` the epoch is scored, and kept as best, on the EMA weights.
        with ema_weights(self.model):
            self.evaluate_epoch(epoch, logs if logs is not None else {}, train_seconds)

    def evaluate(self) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
        """Every task's dev metrics and outputs with the model's current weights."""
        metrics, outputs = {}, {}
        for task in self.tasks:
            split = self.dev[task.name]
            outputs[task.name] = task.predict(self.views[task.name], split, self.batch_size)
            metrics[task.name] = task.evaluate(split.targets, outputs[task.name])
        return metrics, outputs

    def evaluate_epoch(self, epoch: int, logs: dict, train_seconds: float) -> None:
        eval_started = time.perf_counter()
        metrics, outputs = self.evaluate()
        for name, values in outputs.items():
            if not np.all(np.isfinite(values)):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch + 1}: non-finite outputs on the dev "
                    f"set of task {name!r}; {self.learning_rate}: {ADVICE}"
                )
        score = mean_score(self.tasks, metrics)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(logs.get("loss", math.nan)),
            "train_seconds": round(train_seconds, 3),
            "eval_seconds": round(time.perf_counter() - eval_started, 3),
            **self.names.epoch_metrics(logs, metrics, score, self.schedule.epochs[epoch]),
        }
        self.history.append(record)
        improved = self.best_value is None or score > self.best_value
        if improved:
            self.best_value, self.best_epoch = score, epoch + 1
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
            self.best_metrics, self.best_outputs = metrics, outputs
        self.epoch_line = self.names.epoch_line(record, metrics, score, improved)
        if self.patience_spent():
            self.model.stop_training = True

    def patience_spent(self) -> bool:
        """Whether `training.early_stopping_patience` epochs passed without a better mean."""
        epochs_done = len(self.history)
        return self.patience is not None and epochs_done - self.best_epoch >= self.patience

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What a checkpoint keeps of the evaluation: its record and its arrays (the best
        epoch's weights `best/i` and dev outputs `outputs/<task>`)."""
        record = {
            "history": self.history,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
        }
        arrays = {f"best/{i}": w for i, w in enumerate(self.best_weights or [])}
        arrays.update({f"outputs/{name}": v for name, v in self.best_outputs.items()})
        return record, arrays

    def load_state(self, record: dict[str, Any], checkpoint: Any) -> None:
        """The evaluation as it was after the checkpoint's epoch (`state`'s inverse)."""
        self.history = record["history"]
        self.best_value, self.best_epoch = record["best_value"], record["best_epoch"]
        self.best_metrics = record["best_metrics"]
        self.best_weights = checkpoint.listed("best")
        self.best_outputs = {
            key.split("/", 1)[1]: value
            for key, value in checkpoint.arrays.items()
            if key.startswith("outputs/")
        }


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch's dev evaluation: the run's state into `RUN/checkpoint/`
    (`xtune.training.checkpoint`), for `xtune train --resume`."""

    def __init__(self, run_dir: Any, evaluation: DevEvaluation, divergence: DivergenceGuard):
        super().__init__()
        self.run_dir, self.evaluation, self.divergence = run_dir, evaluation, divergence

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.save(epoch + 1)

    def save(self, epochs_done: int) -> None:
        model, optimizer = self.model, self.model.optimizer
        record, arrays = self.evaluation.state()
        arrays.update(variable_arrays("model", model.variables))
        arrays.update(variable_arrays("optimizer", optimizer.variables))
        plan = getattr(model, "plan", None)
        if plan is not None:
            arrays["generator"] = np.asarray(plan.generator.state)
        progress = Progress(
            epochs_done,
            state_file_name(epochs_done),
            record,
            self.divergence.first_loss,
            [variable.path for variable in model.variables],
            [variable.path for variable in optimizer.variables],
        )
        write_checkpoint(self.run_dir, progress, arrays)


class InterruptPoint(keras.callbacks.Callback):
    """Raises a signal that arrived while a finalizer ran (and was dropped there) after the
    training step or epoch it arrived in (`xtune.interrupts`)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_pending()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        raise_pending()


class StepFaultPoint(keras.callbacks.Callback):
    """`fault_point("train_step")` after every training step (fault-injection tests only)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        fault_point("train_step")


class EpochLines(keras.callbacks.Callback):
    """Prints each epoch's dev summary line (`DevEvaluation.epoch_line`). Placed after the
    progress bar's `ProgbarLogger`, so the line follows the finished bar instead of being
    written onto it."""

    def __init__(self, evaluation: DevEvaluation):
        super().__init__()
        self.evaluation = evaluation

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        print(self.evaluation.epoch_line, flush=True)


def fit_verbosity(verbose: int) -> int:
    """`training.verbose` for `Model.fit`: 1 (a live progress bar) only on a terminal; to a
    file or pipe it is 2, one line per epoch instead of a bar of escape codes."""
    if verbose == 1 and not sys.stdout.isatty():
        return 2
    return verbose


def mean_score(tasks: list[Any], metrics: dict[str, dict[str, float]]) -> float:
    """Weighted mean of the selection metrics (a `min` metric counts negated) of the tasks that
    serve: an auxiliary `mlm` task trains the encoder for them and is not scored, unless the
    run has no other task (`xtune pretrain`)."""
    scored = [task for task in tasks if task.serves] or tasks
    total = sum(task.weight * task.selection_value(metrics[task.name]) for task in scored)
    return total / sum(task.weight for task in scored)
