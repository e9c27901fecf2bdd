"""`TaskModel`: the one trained model, for one task or many, and its training step.

The model is the functional graph of `xtune.model.build_task_graph` (the shared encoder and
every task's output) as a `keras.Model` subclass whose `train_step` — Keras's public
extension point — trains one step of the kind the batch names:

- `TaskStep(task, head_only)`: one task's batch; its loss trains the encoder and its own
  head, or with `head_only` (`tasks.<name>.frozen_epochs`) its own head alone.
- `PCGradStep(frozen)`: one batch of every task; their gradients are combined by PCGrad
  (`xtune.training.pcgrad`), the `frozen` tasks' encoder gradients dropped.

Either kind adds FGM/PGD's adversarial gradients (`xtune.training.adversarial`) when the run
has an attack. A batch of `fit`'s dataset is `(kind, batches)`: the index of its step kind in
`step_kinds` and a `(inputs, targets)` pair per task (empty for tasks the step does not
read); `xtune.training.task_batches` builds it from the task sampler's schedule. With one
step kind (every single-task run) the step is the kind's function itself; with several, a
`tf.switch_case` on `kind`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from xtune.model import adapter_of
from xtune.training.adversarial import EmbeddingAttack, adversarial_gradients
from xtune.training.distribution import (
    replica_mean,
    replica_share,
    share_of_sum,
    sum_over_replicas,
    weighted_loss,
)
from xtune.training.ema import base_optimizer
from xtune.training.optimizers import clips_global_norm, gradients_for_clipping
from xtune.training.pcgrad import pcgrad


@dataclass(frozen=True)
class TaskStep:
    """One task's batch; `head_only`: its loss trains only its own (task-only) weights."""

    task: int
    head_only: bool = False


@dataclass(frozen=True)
class PCGradStep:
    """A batch of every task, combined by PCGrad; `frozen` tasks train only their heads."""

    frozen: tuple[int, ...] = ()


StepKind = TaskStep | PCGradStep


@dataclass
class StepPlan:
    """What a training step needs besides the weights: the tasks and their views (functional
    models on one task's inputs), the step kinds, an adversarial attack, PCGrad's random
    generator and the loss trackers. Kept as one plain object so Keras does not track the
    views as sub-layers of the model."""

    tasks: list[Any]
    task_models: list[keras.Model]
    step_kinds: list[StepKind]
    attack: EmbeddingAttack | None
    generator: tf.random.Generator
    loss_tracker: keras.metrics.Mean
    loss_per_task: list[keras.metrics.Mean]
    adversarial_loss_mean: keras.metrics.Mean
    # The optimizer's update compiled on its own with XLA (`training.jit_compile: optimizer`):
    # one fused pass per variable instead of Keras' chain of element-wise ops.
    xla_update: bool = False


def step_plan(
    tasks: Sequence[Any],
    task_models: Sequence[keras.Model],
    step_kinds: Sequence[StepKind],
    attack: EmbeddingAttack | None = None,
    seed: int = 0,
    xla_update: bool = False,
) -> StepPlan:
    return StepPlan(
        tasks=list(tasks),
        task_models=list(task_models),
        step_kinds=list(step_kinds),
        attack=attack,
        generator=tf.random.Generator.from_seed(seed),  # PCGrad's projection orders
        loss_tracker=keras.metrics.Mean(name="loss"),
        loss_per_task=[keras.metrics.Mean(name=f"loss_{task.name}") for task in tasks],
        adversarial_loss_mean=keras.metrics.Mean(name="adversarial_loss"),
        xla_update=xla_update,
    )


@keras.saving.register_keras_serializable(package="xtune")
class TaskModel(keras.Model):
    """Every task's output on one shared encoder; `plan` (a `StepPlan`, set before `fit`)
    says what a training step trains."""

    plan: StepPlan | None = None

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        plan = self.plan
        if plan is None:
            return []
        per_task = plan.loss_per_task if len(plan.tasks) > 1 else []
        extra = [plan.adversarial_loss_mean] if plan.attack is not None else []
        return [plan.loss_tracker, *per_task, *extra]

    # ------------------------------------------------------------ the step

    def train_step(self, data: Any) -> dict[str, Any]:
        kind, batches = data
        variables = list(self.trainable_variables)
        shared = shared_flags(variables, self.get_layer("encoder").trainable_variables)
        branches = [self.step_function(k, batches, variables, shared) for k in self.plan.step_kinds]
        if len(branches) == 1:
            losses, adversarial, rows = branches[0]()
        else:
            losses, adversarial, rows = tf.switch_case(kind, branches)
        self.update_trackers(losses, adversarial, rows)
        return {metric.name: metric.result() for metric in self.metrics}

    def step_function(
        self, kind: StepKind, batches: Any, variables: list[Any], shared: list[bool]
    ) -> Callable[[], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
        """The function of one step kind: applies its update; returns per-task losses, the
        adversarial loss (0 without an attack) and per-task batch rows (0: task not run)."""
        if isinstance(kind, PCGradStep):
            return lambda: self.pcgrad_step(kind, batches, variables, shared)
        return lambda: self.task_step(kind, batches, variables, shared)

    def task_step(
        self, kind: TaskStep, batches: Any, variables: list[Any], shared: list[bool]
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        if kind.head_only:
            variables = [v for v, is_shared in zip(variables, shared, strict=True) if not is_shared]
        loss, adversarial, gradients = self.task_gradients(kind.task, batches, variables)
        if clips_global_norm(base_optimizer(self.optimizer)):  # the whole step's norm is clipped
            gradients = share_of_sum(sum_over_replicas(gradients))  # (one replica: unchanged)
        self.apply(gradients, variables)
        return self.per_task(kind.task, loss, adversarial, batches)

    def pcgrad_step(
        self, kind: PCGradStep, batches: Any, variables: list[Any], shared: list[bool]
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        losses, adversarial, gradients = [], [], []
        for index in range(len(self.plan.tasks)):
            loss, attack_loss, task_gradients = self.task_gradients(index, batches, variables)
            task_gradients = sum_over_replicas(task_gradients)  # PCGrad needs whole gradients
            if index in kind.frozen:  # a frozen task's encoder gradient conflicts with none
                task_gradients = [
                    None if is_shared else g
                    for g, is_shared in zip(task_gradients, shared, strict=True)
                ]
            losses.append(loss)
            adversarial.append(attack_loss)
            gradients.append(task_gradients)
        self.apply(share_of_sum(pcgrad(gradients, shared, self.plan.generator)), variables)
        rows = tf.stack([batch_rows(batches[i]) for i in range(len(self.plan.tasks))])
        return tf.stack(losses), tf.add_n(adversarial) / len(adversarial), rows

    def task_gradients(
        self, index: int, batches: Any, variables: list[Any]
    ) -> tuple[tf.Tensor, tf.Tensor, list[Any]]:
        """(loss, adversarial loss, gradients of the scaled loss) of task `index`'s batch."""
        inputs, targets = batches[index]
        task, task_model = self.plan.tasks[index], self.plan.task_models[index]
        share = replica_share(batch_rows(batches[index]))

        def compute_loss() -> tf.Tensor:
            return task.compute_loss(targets, task_model(inputs, training=True))

        def scale_loss(loss: tf.Tensor) -> tf.Tensor:  # this replica's part of the step's loss
            return self.optimizer.scale_loss(weighted_loss(loss, share))

        if self.plan.attack is not None:
            embeddings = adapter_of(self).word_embeddings
            loss, adversarial, gradients = adversarial_gradients(
                compute_loss, variables, embeddings, self.plan.attack, scale_loss
            )
            return replica_mean(loss), replica_mean(adversarial), gradients
        with tf.GradientTape() as tape:
            loss = compute_loss()
            scaled = scale_loss(loss)
        return replica_mean(loss), tf.zeros([]), tape.gradient(scaled, variables)

    def apply(self, gradients: list[Any], variables: list[Any]) -> None:
        """One optimizer step; under a strategy Keras's optimizer sums the replicas'
        gradients (`xtune.training.distribution`)."""
        present = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        if present:  # none: nothing of this task trains now (a frozen bi-encoder's cosine)
            trained = [v for _, v in present]
            optimizer = base_optimizer(self.optimizer)
            prepared = gradients_for_clipping(optimizer, [g for g, _ in present], trained)
            if self.plan.xla_update and not tf.distribute.has_strategy():
                # Variables are captured, not passed: a tf.function cannot trace Keras ones.
                update = tf.function(lambda g: self.optimizer.apply(g, trained), jit_compile=True)
                update(prepared)
            else:
                self.optimizer.apply(prepared, trained)

    def per_task(
        self, index: int, loss: tf.Tensor, adversarial: tf.Tensor, batches: Any
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One task's loss and rows as per-task vectors (zeros for the other tasks)."""
        count = len(self.plan.tasks)
        losses = tf.one_hot(index, count, dtype=tf.float32) * tf.cast(loss, tf.float32)
        rows = tf.one_hot(index, count, dtype=tf.int32) * batch_rows(batches[index])
        return losses, tf.cast(adversarial, tf.float32), rows

    def update_trackers(self, losses: tf.Tensor, adversarial: tf.Tensor, rows: tf.Tensor) -> None:
        """The step's loss (summed over the tasks it ran), per task and adversarial, each
        weighted by the batch's rows as Keras's own loss tracker does."""
        ran = rows > 0
        step_rows = tf.reduce_max(rows)
        self.plan.loss_tracker.update_state(tf.reduce_sum(losses), sample_weight=step_rows)
        for index, tracker in enumerate(self.plan.loss_per_task):
            tracker.update_state(losses[index], sample_weight=tf.cast(ran[index], tf.float32))
        if self.plan.attack is not None:
            self.plan.adversarial_loss_mean.update_state(adversarial, sample_weight=step_rows)


def batch_rows(batch: Any) -> tf.Tensor:
    """The number of rows in one task's `(inputs, targets)` batch (0 for a placeholder)."""
    return tf.shape(batch[1])[0]


def shared_flags(variables: list[Any], encoder_variables: list[Any]) -> list[bool]:
    """For each variable, whether it belongs to the shared encoder (every task reaches it)."""
    encoder_ids = {id(v) for v in encoder_variables}
    return [id(v) in encoder_ids for v in variables]
