"""Multi-task training (`tasks:` in the config): one shared encoder, one head per task.

`train_tasks(config)` runs these steps, each a function below:

1. `prepare`: read and tokenize every task's splits; build the model (`build_multitask_model`).
2. `fit_stages`: per stage (head only first with `finetune.frozen_epochs`, then the encoder
   too), a fresh optimizer; each epoch the sampler (`training.sampler`, default
   proportional) picks which task's batch each step trains on, or with `training.pcgrad`
   every step takes one batch of every task and combines their gradients by PCGrad. A task
   with `tasks.<name>.frozen_epochs` trains only its own head in its first epochs (head-only
   per task), while the other tasks train the encoder too.
3. `DevEvaluation.end_epoch`: every task's dev metrics; the epoch's score is the weighted
   mean of the tasks' selection metrics (weights: `tasks.<name>.weight`); the best
   epoch's weights are kept.
4. `write_run`: best weights, history and metrics (per task and the mean) into the run folder.

Why not `model.fit`: a step's batch belongs to one task and has that task's inputs, which
one `fit` over one dataset cannot express. So Keras's `EarlyStopping(restore_best_weights=
True)` (it watches one logged value of `fit`) is replaced by `DevEvaluation` (patience and
best weights on the mean score), and `SwapEMAWeights` is not used: `optimizer.use_ema` is
refused for multi-task runs by the config.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from xtune.data.pipeline import batches_per_epoch
from xtune.encoders import load_encoder
from xtune.model import count_parameters
from xtune.tasks import build_tasks, get_sampler
from xtune.tasks.base import Task, TaskData
from xtune.tasks.multitask_model import MultiTaskModel, build_multitask_model
from xtune.training.diverged import TrainingDiverged
from xtune.training.freezing import check_finetune, set_trainable
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.pcgrad import pcgrad, task_gradients
from xtune.training.schedules import SCHEDULES

DEFAULT_SAMPLER = "proportional"


@dataclass
class Prepared:
    tasks: list[Task]
    data: dict[str, TaskData]
    net: MultiTaskModel
    encoder: Any


def train_tasks(config: Any, run_dir: str | Path | None, started: float, precision: str) -> Any:
    """Train a multi-task run and write its run folder; returns a `RunResult`."""
    from xtune.tasks.run_folder import create_run_folder, write_run
    from xtune.training.trainer import default_run_dir, device_name

    prepared = prepare(config)
    parameters = count_parameters(prepared.net.model)
    folder = create_run_folder(run_dir or default_run_dir(config), config, prepared)
    sizes = {task.name: len(prepared.data[task.name].splits["train"]) for task in prepared.tasks}
    print(
        f"xtune: {prepared.encoder.source}; tasks "
        + ", ".join(
            f"{name} ({task.type_name}, {sizes[name]} train rows)"
            for name, task in zip(sizes, prepared.tasks, strict=True)
        )
        + f"; {parameters['trainable']:,} trainable parameters; {precision}; "
        f"{device_name()}; run folder {folder.path}",
        flush=True,
    )
    evaluation = DevEvaluation(prepared, config)
    fit_started = time.perf_counter()
    samples = fit_stages(config, prepared, evaluation)
    fit_seconds = time.perf_counter() - fit_started
    prepared.net.model.set_weights(evaluation.best_weights)
    return write_run(
        folder, config, prepared, evaluation, parameters,
        started=started, fit_seconds=fit_seconds, samples=samples, precision=precision,
    )  # fmt: skip


# ---------------------------------------------------------------- 1. prepare


def prepare(config: Any) -> Prepared:
    """Tasks, their tokenized data, and the model with every task's output on one encoder."""
    encoder = load_encoder(config.encoder)
    check_finetune(config.finetune, encoder.num_layers, config.training.epochs)
    tasks = build_tasks(config.tasks)
    data = {task.name: task.load(encoder) for task in tasks}  # sets each task's labels
    net = build_multitask_model(encoder, tasks)
    for task in tasks:
        task.initialize(net.model, data[task.name])
    set_trainable(net.model, config.finetune)
    return Prepared(tasks, data, net, encoder)


# ---------------------------------------------------------------- 2. fit


def task_batches(task: Task, split: Any, batch_size: int) -> int:
    """Batches in one pass over a task's train split (bucketing included)."""
    if len(split.sides) == 1:
        data = task.config.data
        return batches_per_epoch(split.sides[0], batch_size, data.padding, data.max_length)
    return -(-len(split) // batch_size)


def scaled_batches(batches: list[int], cap: int | None) -> list[int]:
    """`training.steps_per_epoch` shrinks every task's share alike (at least 1 batch each)."""
    total = sum(batches)
    if not cap or cap >= total:
        return batches
    return [max(1, round(count * cap / total)) for count in batches]


def fit_stages(config: Any, prepared: Prepared, evaluation: DevEvaluation) -> int:
    """Every stage's epochs; returns the number of training examples seen."""
    from xtune.training.trainer import training_stages

    training = config.training
    model = prepared.net.model
    train = {task.name: prepared.data[task.name].splits["train"] for task in prepared.tasks}
    batches = [task_batches(t, train[t.name], training.batch_size) for t in prepared.tasks]
    batches = scaled_batches(batches, training.steps_per_epoch)
    sizes = [len(train[task.name]) for task in prepared.tasks]
    pcgrad_steps = math.ceil(sum(batches) / len(batches))
    steps_per_epoch = pcgrad_steps if training.pcgrad else sum(batches)
    iterators = {
        task.name: iter(
            task.dataset(train[task.name], training.batch_size, True, training.seed).repeat()
        )
        for task in prepared.tasks
    }
    sampler = get_sampler(training.sampler or DEFAULT_SAMPLER)
    rng = np.random.default_rng(training.seed)
    samples = 0
    for stage in training_stages(config):
        set_trainable(model, config.finetune, head_only=stage.head_only)
        schedule = SCHEDULES.build(config.schedule.to_dict())
        stage_steps = steps_per_epoch * (stage.end_epoch - stage.start_epoch)
        optimizer = OPTIMIZERS.build(config.optimizer.to_dict())(model, schedule, stage_steps)
        optimizer.build(model.trainable_variables)
        step = make_step(config, prepared, optimizer)
        print(f"{stage.description}, epochs {stage.start_epoch + 1}-{stage.end_epoch}", flush=True)
        for epoch in range(stage.start_epoch, stage.end_epoch):
            epoch_started = time.perf_counter()
            if training.pcgrad:
                order = np.full(pcgrad_steps, -1)  # -1: one batch of every task
            else:
                order = sampler.schedule(batches, epoch, training.epochs, rng, sizes)
            frozen = head_only_tasks(prepared.tasks, epoch)
            losses = run_epoch(prepared.tasks, iterators, step, order, epoch, frozen)
            samples += len(order) * training.batch_size * (len(batches) if training.pcgrad else 1)
            evaluation.end_epoch(epoch, losses, time.perf_counter() - epoch_started, order)
            if evaluation.stop:
                return samples
    return samples


def head_only_tasks(tasks: list[Task], epoch: int) -> tuple[int, ...]:
    """Indices of the tasks that train only their own head in `epoch` (0-based): those still
    within their `tasks.<name>.frozen_epochs`; printed when there are any."""
    frozen = tuple(i for i, task in enumerate(tasks) if epoch < task.config.frozen_epochs)
    if frozen:
        names = ", ".join(tasks[i].name for i in frozen)
        print(f"epoch {epoch + 1}: head only (encoder not trained by) {names}", flush=True)
    return frozen


@dataclass
class StepParts:
    """What every compiled step needs: the trainable variables, which of them the tasks share
    (the encoder's), the task models and the optimizer."""

    tasks: list[Task]
    task_models: list[Any]
    variables: list[Any]
    shared: list[bool]
    optimizer: Any

    def apply(self, gradients: list[Any], variables: list[Any]) -> None:
        present = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        if present:  # none: a task without trainable weights now (a frozen bi-encoder's cosine)
            self.optimizer.apply([g for g, _ in present], [v for _, v in present])

    def loss(self, index: int, batch: Any) -> Any:
        inputs, targets = batch
        outputs = self.task_models[index](inputs, training=True)
        return self.tasks[index].compute_loss(targets, outputs)


def make_step(config: Any, prepared: Prepared, optimizer: Any) -> Any:
    """The training step `step(task_index, batch, frozen)`: one task's batch, or with PCGrad
    `step(-1, [batch of every task], frozen)`. `frozen` lists the tasks whose loss trains
    only their own head this epoch (`head_only_tasks`): their encoder gradients are dropped.
    Compiled functions are built on first use, per (task, frozen or not) or per PCGrad
    `frozen` set."""
    variables = list(prepared.net.model.trainable_variables)
    shared_ids = {id(v) for v in prepared.net.encoder_model.trainable_variables}
    task_models = [prepared.net.task_models[task.name] for task in prepared.tasks]
    parts = StepParts(
        prepared.tasks, task_models, variables, [id(v) in shared_ids for v in variables],
        optimizer,
    )  # fmt: skip
    seed = config.training.seed
    build = pcgrad_step_builder(parts, seed) if config.training.pcgrad else task_step
    steps: dict[Any, Any] = {}

    def step(index: int, batch: Any, frozen: tuple[int, ...]) -> list[Any]:
        key = frozen if index < 0 else (index, index in frozen)
        if key not in steps:
            steps[key] = build(parts, key)
        return steps[key](batch)

    return step


def task_step(parts: StepParts, key: tuple[int, bool]) -> Any:
    """One task's batch; a head-only task's gradient is taken for task-only variables only."""
    index, head_only = key
    variables = parts.variables
    if head_only:
        variables = [v for v, shared in zip(variables, parts.shared, strict=True) if not shared]

    @tf.function(reduce_retracing=True)
    def step(batch: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = parts.loss(index, batch)
        parts.apply(tape.gradient(loss, variables), variables)
        return [loss]

    return step


def pcgrad_step_builder(parts: StepParts, seed: int) -> Any:
    """A builder of PCGrad steps (one batch of every task) for a `frozen` set of tasks."""
    generator = tf.random.Generator.from_seed(seed)
    everyone = range(len(parts.tasks))

    def build(parts: StepParts, frozen: tuple[int, ...]) -> Any:
        @tf.function(reduce_retracing=True)
        def step(batches: Any) -> Any:
            losses, gradients = task_gradients(
                lambda: [parts.loss(k, batches[k]) for k in everyone], parts.variables
            )
            for k in frozen:  # a frozen task's (zero) encoder gradient conflicts with none
                gradients[k] = [
                    None if shared else g
                    for g, shared in zip(gradients[k], parts.shared, strict=True)
                ]
            parts.apply(pcgrad(gradients, parts.shared, generator), parts.variables)
            return losses

        return step

    return build


def run_epoch(
    tasks: list[Task],
    iterators: dict[str, Any],
    step: Any,
    order: np.ndarray,
    epoch: int,
    frozen: tuple[int, ...] = (),
) -> dict[str, float]:
    """The epoch's steps in `order` (task indices; -1 = every task), with the tasks `frozen`
    training only their heads; mean loss per task."""
    totals, counts = np.zeros(len(tasks)), np.zeros(len(tasks))
    for number, index in enumerate(order):
        if index < 0:
            batch = [next(iterators[task.name]) for task in tasks]
            chosen = list(range(len(tasks)))
        else:
            batch, chosen = next(iterators[tasks[index].name]), [int(index)]
        losses = [float(loss) for loss in step(int(index), batch, frozen)]
        for task_index, loss in zip(chosen, losses, strict=True):
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch + 1}, step {number + 1}: task "
                    f"{tasks[task_index].name!r} has a non-finite loss; lower the learning "
                    "rate or set optimizer.clipnorm"
                )
            totals[task_index] += loss
            counts[task_index] += 1
    return {
        task.name: float(totals[i] / counts[i]) if counts[i] else math.nan
        for i, task in enumerate(tasks)
    }


# ---------------------------------------------------------------- 3. evaluate


class DevEvaluation:
    """Per epoch: every task's dev metrics and their weighted mean score; keeps the best
    epoch's weights and stops after `training.early_stopping_patience` epochs without a
    better mean (see the module docstring for why this is not a Keras callback)."""

    def __init__(self, prepared: Prepared, config: Any):
        self.prepared = prepared
        self.batch_size = config.training.eval_batch_size
        self.patience = config.training.early_stopping_patience
        self.history: list[dict[str, Any]] = []
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.best_metrics: dict[str, dict[str, float]] = {}
        self.stop = False

    def evaluate(self) -> dict[str, dict[str, float]]:
        metrics = {}
        for task in self.prepared.tasks:
            split = self.prepared.data[task.name].splits["dev"]
            task_model = self.prepared.net.task_models[task.name]
            metrics[task.name] = task.evaluate(
                split.targets, task.predict(task_model, split, self.batch_size)
            )
        return metrics

    def mean_score(self, metrics: dict[str, dict[str, float]]) -> float:
        """Weighted mean of the tasks' selection metrics (a `min` metric counts negated)."""
        tasks = self.prepared.tasks
        total = sum(task.weight * task.selection_value(metrics[task.name]) for task in tasks)
        return total / sum(task.weight for task in tasks)

    def end_epoch(
        self, epoch: int, losses: dict[str, float], train_seconds: float, order: np.ndarray
    ) -> None:
        eval_started = time.perf_counter()
        metrics = self.evaluate()
        score = self.mean_score(metrics)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.nansum(list(losses.values()))),
            "train_seconds": round(train_seconds, 3),
            "eval_seconds": round(time.perf_counter() - eval_started, 3),
            "val_mean_score": score,
        }
        for task in self.prepared.tasks:
            record[f"steps_{task.name}"] = int(np.sum((order == -1) | (order == self.index(task))))
            record[f"train_loss_{task.name}"] = losses[task.name]
            record.update({f"val_{task.name}.{k}": v for k, v in metrics[task.name].items()})
        self.history.append(record)
        improved = self.best_value is None or score > self.best_value
        if improved:
            self.best_value, self.best_epoch = score, epoch + 1
            self.best_weights = [np.array(w) for w in self.prepared.net.model.get_weights()]
            self.best_metrics = metrics
        summary = "  ".join(
            f"{task.name} {task.metric} {metrics[task.name][task.metric]:.4f}"
            for task in self.prepared.tasks
        )
        print(
            f"epoch {epoch + 1}: loss {record['train_loss']:.4f}  {summary}  mean {score:.4f}"
            + ("  (best)" if improved else ""),
            flush=True,
        )
        if self.patience is not None and epoch + 1 - self.best_epoch >= self.patience:
            self.stop = True

    def index(self, task: Task) -> int:
        return self.prepared.tasks.index(task)


def flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """`{task: {metric: v}}` -> `{"task.metric": v}` (how history and results name them)."""
    return {
        f"{task}.{key}": value for task, values in metrics.items() for key, value in values.items()
    }
