"""The training batches of a stage: which task (and step kind) each step trains, as one
`tf.data` dataset for `Model.fit`.

Per epoch the task sampler (`training.sampler`, default proportional) orders the tasks'
batches (`sum(batches)` steps), or with `training.pcgrad` every step takes one batch of
every task (the mean of the tasks' batch counts, rounded up). Tasks still within their
`tasks.<name>.frozen_epochs` train only their own heads (`head_only_tasks`). The schedule of
every epoch is drawn up front, in epoch order, from one seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from xtune.data.pipeline import batches_per_epoch
from xtune.tasks import get_sampler
from xtune.training.task_model import PCGradStep, StepKind, TaskStep

DEFAULT_SAMPLER = "proportional"


@dataclass
class EpochPlan:
    """One epoch: the task of each step (-1: every task, PCGrad) and the head-only tasks."""

    order: np.ndarray
    frozen: tuple[int, ...]

    def steps_of(self, task: int) -> int:
        return int(np.sum((self.order == -1) | (self.order == task)))

    def kind(self, task: int) -> StepKind:
        if task < 0:
            return PCGradStep(self.frozen)
        return TaskStep(task, task in self.frozen)


@dataclass
class Schedule:
    """Every epoch's plan and the number of steps an epoch has."""

    epochs: list[EpochPlan]
    steps_per_epoch: int
    samples_per_step: int
    sizes: list[int] = field(default_factory=list)


def task_batches(task: Any, split: Any, batch_size: int, max_buckets: int) -> int:
    """Batches in one pass over a task's train split (bucketing, in at most `max_buckets`
    lengths, included)."""
    if len(split.sides) == 1:
        data = task.config.data
        side = split.sides[0]
        return batches_per_epoch(side, batch_size, data.padding, data.max_length, max_buckets)
    return -(-len(split) // batch_size)


def scaled_batches(batches: list[int], cap: int | None) -> list[int]:
    """`training.steps_per_epoch` shrinks every task's share alike (at least 1 batch each)."""
    total = sum(batches)
    if not cap or cap >= total:
        return batches
    return [max(1, round(count * cap / total)) for count in batches]


def head_only_tasks(tasks: list[Any], epoch: int) -> tuple[int, ...]:
    """Indices of the tasks that train only their own head in `epoch` (0-based): those still
    within their `tasks.<name>.frozen_epochs`."""
    return tuple(i for i, task in enumerate(tasks) if epoch < task.config.frozen_epochs)


def plan_epochs(
    training: Any, tasks: list[Any], train: dict[str, Any], max_buckets: int
) -> Schedule:
    """The schedule of all `training.epochs`, from `training.sampler` / `training.pcgrad`;
    `max_buckets`: the train datasets' `bucket_limit`."""
    batches = [task_batches(t, train[t.name], training.batch_size, max_buckets) for t in tasks]
    batches = scaled_batches(batches, training.steps_per_epoch)
    sizes = [len(train[task.name]) for task in tasks]
    sampler = get_sampler(training.sampler or DEFAULT_SAMPLER)
    rng = np.random.default_rng(training.seed)
    plans = []
    for epoch in range(training.epochs):
        if training.pcgrad:
            order = np.full(math.ceil(sum(batches) / len(batches)), -1)
        else:
            order = np.asarray(sampler.schedule(batches, epoch, training.epochs, rng, sizes))
        plans.append(EpochPlan(order, head_only_tasks(tasks, epoch)))
    per_step = training.batch_size * (len(tasks) if training.pcgrad else 1)
    return Schedule(plans, len(plans[0].order), per_step, sizes)


def stage_kinds(schedule: Schedule, start: int, end: int) -> list[StepKind]:
    """The distinct step kinds of epochs `start`..`end - 1`, in order of first use."""
    kinds: dict[StepKind, None] = {}
    for plan in schedule.epochs[start:end]:
        for task in np.unique(plan.order):
            kinds.setdefault(plan.kind(int(task)), None)
    return list(kinds)


def batches_taken(schedule: Schedule, tasks: int, start: int, end: int) -> list[int]:
    """How many batches of each task epochs `start`..`end - 1` take (a PCGrad step takes one
    of every task)."""
    plans = schedule.epochs[start:end]
    return [sum(plan.steps_of(task) for plan in plans) for task in range(tasks)]


def stage_dataset(
    schedule: Schedule,
    start: int,
    end: int,
    kinds: list[StepKind],
    task_datasets: list[tf.data.Dataset],
) -> tf.data.Dataset:
    """`(kind index, per-task batches)` for every step of epochs `start`..`end - 1`.

    `task_datasets[i]` yields task i's `(inputs, targets)` forever (shuffled, seeded). A
    step of one task gets empty placeholder batches for the others; a PCGrad step a batch of
    every task."""
    plans = schedule.epochs[start:end]
    kind_index = {kind: index for index, kind in enumerate(kinds)}
    steps_kinds = np.concatenate(
        [[kind_index[plan.kind(int(task))] for task in plan.order] for plan in plans]
    ).astype(np.int32)
    kind_dataset = tf.data.Dataset.from_tensor_slices(steps_kinds)
    if any(isinstance(kind, PCGradStep) for kind in kinds):
        batches = tf.data.Dataset.zip(tuple(task_datasets))
    elif len(task_datasets) == 1:
        batches = task_datasets[0].map(lambda *batch: (batch,))
    else:
        order = np.concatenate([plan.order for plan in plans]).astype(np.int64)
        batches = tf.data.Dataset.choose_from_datasets(
            with_placeholders(task_datasets), tf.data.Dataset.from_tensor_slices(order)
        )
    return tf.data.Dataset.zip(kind_dataset, batches).prefetch(tf.data.AUTOTUNE)


def with_placeholders(task_datasets: list[tf.data.Dataset]) -> list[tf.data.Dataset]:
    """Each task's batches as a tuple over every task, the others' entries empty (0 rows)."""
    empty = [empty_like(dataset.element_spec) for dataset in task_datasets]

    def widen(index: int) -> Any:
        def batch_tuple(*batch: Any) -> tuple:
            return tuple(
                batch if other == index else placeholder()
                for other, placeholder in enumerate(empty)
            )

        return batch_tuple

    return [dataset.map(widen(i)) for i, dataset in enumerate(task_datasets)]


def empty_like(spec: Any) -> Any:
    """A function making a structure of 0-row tensors that fits `spec` (a batch's specs)."""

    def empty() -> Any:
        return tf.nest.map_structure(
            lambda s: tf.zeros([0, *[0 if d is None else d for d in s.shape[1:]]], s.dtype), spec
        )

    return empty
