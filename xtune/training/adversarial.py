"""Adversarial training on the word-embedding matrix (FGM, PGD): the gradients a training step adds.

Each step: the clean loss and its gradients; then the matrix `E` (the encoder adapter's
`word_embeddings`) is moved to `E + r`, with `r` found by gradient ascent on the loss, the loss is
computed again, and its gradients are added to the clean ones; `E` is then restored from a
copy, bitwise. The optimizer applies the summed gradients once. With several replicas
(`xtune.training.distribution`) `r` comes from the whole step's gradient, the same on every
replica. This is the recipe of
bert4keras and of the PyTorch FGM/PGD snippets; `xtune.training.task_model.TaskModel`'s
`train_step` calls `adversarial_gradients` for the task of each step.

- FGM (Miyato et al., 2017, "Adversarial Training Methods for Semi-Supervised Text
  Classification"): `r = epsilon * g / ||g||`, `g` the gradient of the clean loss w.r.t. `E`.
- PGD (Madry et al., 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"):
  `steps` ascent steps `r <- project_epsilon(r + alpha * g / ||g||)`, `g` taken at `E + r`;
  the gradients of the last step's loss are the adversarial ones.

`||.||` is the Frobenius norm of the whole matrix (only rows of tokens in the batch are
non-zero). Under mixed precision the matrix and `r` stay float32; a non-finite gradient (a
float16 loss-scale overflow) gives `r = 0`, and the loss-scale optimizer skips the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from xtune.registry import Registry
from xtune.training.checks import check_fgm, check_pgd
from xtune.training.distribution import assign_on_every_replica, sum_over_replicas

ADVERSARIAL = Registry("adversarial method")


def dense(gradient: Any) -> tf.Tensor:
    return tf.convert_to_tensor(gradient)


def unit_direction(gradient: tf.Tensor) -> tf.Tensor:
    """`g / ||g||`, or zeros when the norm is 0 or not finite."""
    norm = tf.norm(gradient)
    usable = tf.logical_and(tf.math.is_finite(norm), norm > 0.0)
    return tf.where(usable, gradient / tf.where(usable, norm, 1.0), tf.zeros_like(gradient))


def project(perturbation: tf.Tensor, radius: float) -> tf.Tensor:
    """The nearest point of the ball `||r|| <= radius`."""
    norm = tf.norm(perturbation)
    return perturbation * tf.minimum(1.0, radius / tf.maximum(norm, 1e-12))


def global_direction(gradient: Any) -> tf.Tensor:
    """The embedding gradient of the whole step (summed over replicas, where there are
    several): every replica moves the embeddings the same way, as one replica would."""
    (summed,) = sum_over_replicas([dense(gradient)])
    return summed


def add_gradients(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, tf.IndexedSlices) or isinstance(b, tf.IndexedSlices):
        return dense(a) + dense(b)
    return a + b


class EmbeddingAttack:
    """How to move the word-embedding matrix: `steps` calls of `next_perturbation`."""

    steps = 1

    def next_perturbation(self, perturbation: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError


@ADVERSARIAL.register("none")
def no_attack() -> None:
    """Plain training."""
    return None


@ADVERSARIAL.register("fgm")
class FGM(EmbeddingAttack):
    """Fast gradient method: one step of size `epsilon` along the normalized loss gradient.

    ```yaml
    adversarial: {name: fgm, epsilon: 1.0}
    ```
    """

    check_arguments = staticmethod(check_fgm)

    def __init__(self, epsilon: float = 1.0):
        self.check_arguments(epsilon)
        self.epsilon = epsilon

    def next_perturbation(self, perturbation: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
        return self.epsilon * unit_direction(gradient)

    def get_config(self) -> dict[str, Any]:
        return {"name": "fgm", "epsilon": self.epsilon}


@ADVERSARIAL.register("pgd")
class PGD(EmbeddingAttack):
    """Projected gradient ascent: `steps` steps of size `alpha`, kept within radius `epsilon`.

    ```yaml
    adversarial: {name: pgd, epsilon: 1.0, alpha: 0.3, steps: 3}
    ```
    """

    check_arguments = staticmethod(check_pgd)

    def __init__(self, epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3):
        self.check_arguments(epsilon, alpha, steps)
        self.epsilon = epsilon
        self.alpha = alpha
        self.steps = steps

    def next_perturbation(self, perturbation: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
        return project(perturbation + self.alpha * unit_direction(gradient), self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {"name": "pgd", "epsilon": self.epsilon, "alpha": self.alpha, "steps": self.steps}


def get_attack(spec: Any) -> EmbeddingAttack | None:
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    return ADVERSARIAL.build(spec)


def loss_and_gradients(
    compute_loss: Callable[[], tf.Tensor],
    sources: list[keras.Variable],
    scale_loss: Callable[[tf.Tensor], tf.Tensor],
) -> tuple[tf.Tensor, list[Any]]:
    """The loss (unscaled) and the gradients of the scaled loss w.r.t. `sources`."""
    with tf.GradientTape() as tape:
        for variable in sources:
            if not variable.trainable:  # frozen embeddings still need their gradient
                tape.watch(variable.value)
        loss = compute_loss()
        scaled = scale_loss(loss)
    return loss, tape.gradient(scaled, [v.value for v in sources])


def adversarial_gradients(
    compute_loss: Callable[[], tf.Tensor],
    trainable: list[keras.Variable],
    embeddings: keras.Variable,
    attack: EmbeddingAttack,
    scale_loss: Callable[[tf.Tensor], tf.Tensor],
) -> tuple[tf.Tensor, tf.Tensor, list[Any]]:
    """`(clean loss, adversarial loss, clean + adversarial gradients)` for `trainable`; the
    embedding matrix is back to its exact value on return. `compute_loss()` runs the forward
    pass of one batch (a training step's task)."""
    position = next((i for i, v in enumerate(trainable) if v is embeddings), None)
    sources = trainable if position is not None else [*trainable, embeddings]
    position = len(trainable) if position is None else position

    loss, gradients = loss_and_gradients(compute_loss, sources, scale_loss)
    clean = gradients[: len(trainable)]
    direction = global_direction(gradients[position])
    original = tf.identity(embeddings.value)
    perturbation = tf.zeros_like(original)
    for step in range(attack.steps):
        perturbation = attack.next_perturbation(perturbation, direction)
        assign_on_every_replica(embeddings, original + perturbation)
        if step < attack.steps - 1:
            _, (gradient,) = loss_and_gradients(compute_loss, [embeddings], scale_loss)
            direction = global_direction(gradient)
    adversarial_loss, adversarial = loss_and_gradients(compute_loss, trainable, scale_loss)
    assign_on_every_replica(embeddings, original)
    total = [add_gradients(a, b) for a, b in zip(clean, adversarial, strict=True)]
    return loss, adversarial_loss, total
