"""Optimizers by name: AdamW (decay excluded from biases and LayerNorm) and Adam, with per-group
learning-rate multipliers (layer-wise decay, head learning rate) applied to the step itself.

Adam is invariant to the scale of the gradient, so a learning-rate multiplier cannot be put on
the gradient: `ScaledAdam` / `ScaledAdamW` multiply the learning rate of each variable's Adam
step, and of its decoupled weight decay, by that variable's multiplier. Keras'
`MultiOptimizer` would need one optimizer per group, and then global-norm clipping,
gradient accumulation and EMA would each work per group instead of over the whole model.

`lazy_embeddings` (off by default) updates the word embedding lazily, as TensorFlow Addons'
`LazyAdam`: a step moves only the rows of the tokens in the batch, and only those rows' Adam
moments and weight decay; an absent token's row, moments and decay wait until it appears. That
is a different optimizer (a rare token's moments do not decay while it is absent), in exchange
for not touching the whole vocabulary's rows every step (see benchmarks/README.md). The rows stay
a sparse `IndexedSlices` through global-norm clipping, which xtune then does itself (`apply`:
Keras' clipping would make them dense), and are deduplicated in static shapes, so XLA compiles
the update.

`fused_update` (off by default) runs each variable's Adam step as TensorFlow's fused kernel
(`ResourceApplyAdam`: one multi-threaded pass over gradient, moments and weights) instead of
Keras' chain of element-wise ops. Same formula; the kernel forms `1 - beta` in float32 where
Keras forms it in float64, so the weights differ from Keras' in the last bit or two.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from xtune.model import adapter_of
from xtune.registry import Registry, checked_by
from xtune.training.checks import check_adam, check_adamw
from xtune.training.distribution import per_replica_clipnorm
from xtune.training.layerwise import variable_multipliers
from xtune.training.schedules import SCHEDULES  # noqa: F401  (re-exported for the config)

OPTIMIZERS = Registry("optimizer")

# Variables whose name contains one of these get no weight decay (biases and LayerNorm).
NO_DECAY_NAMES = ["bias", "gamma", "beta"]

# A registered optimizer returns a factory: (model, schedule factory, total steps) -> optimizer.
OptimizerFactory = Callable[[keras.Model, Any, int], keras.optimizers.Optimizer]


class StepScaling:
    """Adam step and decoupled weight decay scaled per variable; mixed into Keras' Adam.

    `learning_rate_multipliers` maps variable paths to multipliers (absent paths: 1.0); the
    step of a variable is Adam's step at `multiplier * learning_rate(step)`, and its
    decoupled weight decay (`decoupled_weight_decay`, not on variables whose name matches
    `no_decay_names`) is `variable * weight_decay * multiplier * learning_rate(step)`, as
    Keras' AdamW decays each variable before its step. Both happen in `update_step`, Keras'
    public extension point; the base optimizer's own weight decay stays off.
    """

    def __init__(
        self,
        *args: Any,
        learning_rate_multipliers: dict[str, float] | None = None,
        base_learning_rate: float | None = None,
        decoupled_weight_decay: float | None = None,
        no_decay_names: list[str] | None = None,
        lazy_paths: list[str] | None = None,
        rows_clipnorm: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if getattr(self, "amsgrad", False):
            raise ValueError("amsgrad is not supported with learning-rate multipliers")
        self.learning_rate_multipliers = dict(learning_rate_multipliers or {})
        # The configured peak rate, for reports; the schedule is what the step uses.
        self.base_learning_rate = base_learning_rate
        self.decoupled_weight_decay = decoupled_weight_decay
        self.no_decay_names = list(no_decay_names or [])
        # Paths of the variables updated lazily (rows the gradient touches), with own moments.
        self.lazy_paths = list(lazy_paths or [])
        # Global-norm clipping done here instead of by Keras (which makes slices dense).
        self.rows_clipnorm = rows_clipnorm
        self.step_multipliers: dict[int, float] = {}
        self.lazy_moments: dict[int, tuple[Any, Any]] = {}

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        for variable in var_list:
            multiplier = float(self.learning_rate_multipliers.get(variable.path, 1.0))
            for form in update_step_forms(variable):
                self.step_multipliers[id(form)] = multiplier
        self.build_lazy_moments(var_list)

    def build_lazy_moments(self, var_list: list[Any]) -> None:
        """First and second moments of the lazily updated variables, kept apart from Keras'
        dense ones (those stay allocated and unused for them)."""
        for variable in var_list:
            if variable.path in self.lazy_paths:
                moments = (
                    self.add_variable_from_reference(variable, "lazy_momentum"),
                    self.add_variable_from_reference(variable, "lazy_velocity"),
                )
                for form in (variable, variable.value):
                    self.lazy_moments[id(form)] = moments

    def apply(self, grads: list[Any], trainable_variables: list[Any] | None = None) -> None:
        if self.rows_clipnorm and any(g is not None for g in grads):
            grads = clipped_by_global_norm(grads, self.rows_clipnorm)
        super().apply(grads, trainable_variables)

    def multiplier_of(self, variable: Any) -> float:
        return self.step_multipliers[id(variable)]

    def decays(self, variable: Any) -> bool:
        if self.decoupled_weight_decay is None:
            return False
        return not any(re.search(name, variable.name) for name in self.no_decay_names)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        multiplier = self.multiplier_of(variable)
        if id(variable) in self.lazy_moments:
            self.lazy_update_step(gradient, variable, learning_rate, multiplier)
            return
        if self.decays(variable):
            lr = ops.cast(self.learning_rate, variable.dtype) * multiplier
            wd = ops.cast(self.decoupled_weight_decay, variable.dtype)
            self.assign_sub(variable, variable * wd * lr)
        super().update_step(gradient, variable, learning_rate * multiplier)

    def lazy_update_step(
        self, gradient: Any, variable: Any, learning_rate: Any, multiplier: float
    ) -> None:
        """Keras' Adam step (and the decoupled decay) on the rows `gradient` touches only."""
        momentum, velocity = self.lazy_moments[id(variable)]
        indices, values = touched_rows(gradient)
        dtype = variable.dtype
        values = tf.cast(values, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        lr = tf.cast(learning_rate, dtype) * multiplier
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        rows = tf.gather(variable, indices)
        if self.decays(variable):
            decay = tf.cast(self.learning_rate, dtype) * multiplier
            rows -= rows * (decay * tf.cast(self.decoupled_weight_decay, dtype))
        m = tf.gather(momentum.value, indices)
        m += (values - m) * (1 - beta_1)
        v = tf.gather(velocity.value, indices)
        v += (tf.square(values) - v) * (1 - beta_2)
        rows -= m * alpha / (tf.sqrt(v) + tf.cast(self.epsilon, dtype))
        # Row writes, not increments: `indices` may repeat a row with equal values.
        self.assign(momentum, tf.IndexedSlices(m, indices))
        self.assign(velocity, tf.IndexedSlices(v, indices))
        self.assign(variable, tf.IndexedSlices(rows, indices))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "learning_rate_multipliers": self.learning_rate_multipliers,
            "base_learning_rate": self.base_learning_rate,
            "decoupled_weight_decay": self.decoupled_weight_decay,
            "no_decay_names": self.no_decay_names,
            "lazy_paths": self.lazy_paths,
            "rows_clipnorm": self.rows_clipnorm,
        }


def touched_rows(gradient: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """(row indices, summed gradient rows) of the rows a gradient touches, for row writes: an
    `IndexedSlices`' indices, every slice of a row with that row's sum (a row written twice
    gets one value), or a dense gradient's non-zero rows (one that gradient accumulation or a
    tied output layer made dense)."""
    if isinstance(gradient, tf.IndexedSlices):
        first = first_slices(gradient)
        return gradient.indices, tf.gather(row_sums(gradient, first), first)
    gradient = tf.convert_to_tensor(gradient)
    nonzero = tf.reduce_any(tf.not_equal(gradient, 0), axis=list(range(1, gradient.shape.rank)))
    indices = tf.reshape(tf.where(nonzero), [-1])
    return indices, tf.gather(gradient, indices)


def unique_slices(gradient: tf.IndexedSlices) -> tuple[tf.Tensor, tf.Tensor]:
    """Each touched row's summed gradient once, in static shapes (XLA compiles them): the
    slices keep their indices; the first slice of each row carries the row's sum (added in
    slice order) and its repeats carry zeros (no weight to a norm; slices of `gradient`
    again, they add nothing to the row)."""
    return gradient.indices, row_sums(gradient, first_slices(gradient))


def row_sums(gradient: tf.IndexedSlices, first: tf.Tensor) -> tf.Tensor:
    """Each row's slices summed (in slice order) onto its first slice; zeros elsewhere."""
    return tf.math.unsorted_segment_sum(gradient.values, first, tf.shape(first)[0])


def first_slices(gradient: tf.IndexedSlices) -> tf.Tensor:
    """For each slice, the position of the first slice with its index (a minimum scattered
    into a vocabulary-sized table)."""
    indices = gradient.indices
    positions = tf.range(tf.shape(indices)[0], dtype=indices.dtype)
    rows = tf.cast(gradient.dense_shape[0], indices.dtype)
    table = tf.fill([rows], tf.shape(indices, out_type=indices.dtype)[0])
    table = tf.tensor_scatter_nd_min(table, indices[:, None], positions)
    return tf.gather(table, indices)


def clipped_by_global_norm(gradients: list[Any], clipnorm: float) -> list[Any]:
    """Keras' global-norm clipping with the same ops, but an `IndexedSlices` stays slices
    (its rows counted once each, as `gradients_for_clipping` leaves them)."""
    parts = [values_of(g) for g in gradients if g is not None]
    norm = ops.sqrt(ops.sum(ops.stack([ops.sum(ops.square(part)) for part in parts])))
    scale = clipnorm * ops.minimum(1.0 / norm, 1.0 / clipnorm)
    scale = scale + (norm - norm)  # NaN for a non-finite norm, as Keras'
    return [None if g is None else scaled(g, scale) for g in gradients]


def values_of(gradient: Any) -> Any:
    return gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient


def scaled(gradient: Any, scale: Any) -> Any:
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * scale, gradient.indices, gradient.dense_shape)
    return gradient * scale


@keras.saving.register_keras_serializable(package="xtune")
class FusedAdam(keras.optimizers.Optimizer):
    """Keras' Adam with the step of TensorFlow's fused kernel `ResourceApplyAdam`: one pass
    per variable, each element read and written once, on every core; the update Keras writes
    as ~10 element-wise ops. Differs from `keras.optimizers.Adam` in the rounding of
    `1 - beta_1` and `1 - beta_2` (float32 here, float64 there); tests bound the difference."""

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.fused_moments: dict[int, tuple[Any, Any]] = {}

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        momentums, velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        for variable, momentum, velocity in zip(var_list, momentums, velocities, strict=True):
            # Under a strategy the moments' `handle` is the replica's own inside its update.
            for form in update_step_forms(variable):
                self.fused_moments[id(form)] = (momentum, velocity)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        momentum, velocity = self.fused_moments[id(variable)]
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=backend_variable(variable).handle,
            m=backend_variable(momentum).handle,
            v=backend_variable(velocity).handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype),
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


def update_step_forms(variable: Any) -> tuple[Any, ...]:
    """Every object `update_step` may get for `variable`: the Keras variable, its backend
    variable (`variable.value`, what TensorFlow passes), and under a `tf.distribute` strategy
    each replica's copy of it."""
    copies = tf.distribute.get_strategy().experimental_local_results(variable.value)
    return (variable, variable.value, *copies)


def backend_variable(variable: Any) -> Any:
    """The `tf.Variable` behind a Keras variable (`update_step` gets either)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


@keras.saving.register_keras_serializable(package="xtune")
class ScaledAdamW(StepScaling, keras.optimizers.Adam):
    """AdamW with per-variable learning-rate multipliers (see `StepScaling`)."""


@keras.saving.register_keras_serializable(package="xtune")
class ScaledAdam(StepScaling, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers (see `StepScaling`)."""


@keras.saving.register_keras_serializable(package="xtune")
class ScaledFusedAdamW(StepScaling, FusedAdam):
    """`ScaledAdamW` with the fused kernel's step (`optimizer.fused_update`)."""


@keras.saving.register_keras_serializable(package="xtune")
class ScaledFusedAdam(StepScaling, FusedAdam):
    """`ScaledAdam` with the fused kernel's step (`optimizer.fused_update`)."""


def shared_arguments(
    model: keras.Model,
    schedule: Any,
    total_steps: int,
    learning_rate: float,
    layerwise_lr_decay: float,
    head_learning_rate: float | None,
    clipnorm: float | None,
    use_ema: bool,
    ema_momentum: float,
    gradient_accumulation_steps: int | None,
    lazy_embeddings: bool,
) -> dict[str, Any]:
    """Constructor arguments both optimizers take, resolved against the model."""
    lazy_paths = [adapter_of(model).word_embeddings.path] if lazy_embeddings else []
    accumulates = bool(gradient_accumulation_steps and gradient_accumulation_steps > 1)
    # Lazy rows: xtune clips (Keras' clipping would make the slices dense), unless Keras
    # accumulates gradients first (it clips their mean at the update).
    rows_clipnorm = clipnorm if lazy_paths and not accumulates else None
    head_multiplier = 1.0 if head_learning_rate is None else head_learning_rate / learning_rate
    return {
        "learning_rate": schedule(learning_rate, total_steps),
        "learning_rate_multipliers": variable_multipliers(
            model, layerwise_lr_decay, head_multiplier
        ),
        "base_learning_rate": learning_rate,
        "lazy_paths": lazy_paths,
        "rows_clipnorm": rows_clipnorm,
        # Keras clips each replica's share of the summed gradient (xtune.training.distribution).
        "global_clipnorm": None if rows_clipnorm else per_replica_clipnorm(clipnorm),
        "use_ema": use_ema,
        "ema_momentum": ema_momentum,
        # Keras wants >= 2 or None.
        "gradient_accumulation_steps": gradient_accumulation_steps if accumulates else None,
    }


@OPTIMIZERS.register("adamw")
@checked_by(check_adamw)
def adamw(
    learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    layerwise_lr_decay: float = 1.0,
    head_learning_rate: float | None = None,
    clipnorm: float | None = 1.0,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
    gradient_accumulation_steps: int | None = None,
    lazy_embeddings: bool = False,
    fused_update: bool = False,
) -> OptimizerFactory:
    """AdamW; no weight decay on biases and LayerNorm. `layerwise_lr_decay` and
    `head_learning_rate` set per-group rates (`xtune.training.layerwise`), `clipnorm` clips
    the global norm, `gradient_accumulation_steps` averages that many batches per update
    (schedule steps still count batches), `use_ema` keeps an exponential moving average of
    the weights that the dev evaluation uses. `lazy_embeddings` updates only the word
    embedding's rows of the batch's tokens (their moments and decay too; see the module's
    docstring): faster steps, a different optimizer, off by default. `fused_update` runs the
    Adam step as TensorFlow's fused kernel (same formula, last-bit differences; off by
    default)."""

    def build(model: keras.Model, schedule: Any, total_steps: int) -> keras.optimizers.Optimizer:
        optimizer = ScaledFusedAdamW if fused_update else ScaledAdamW
        return optimizer(
            decoupled_weight_decay=weight_decay,
            no_decay_names=NO_DECAY_NAMES,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            **shared_arguments(
                model,
                schedule,
                total_steps,
                learning_rate,
                layerwise_lr_decay,
                head_learning_rate,
                clipnorm,
                use_ema,
                ema_momentum,
                gradient_accumulation_steps,
                lazy_embeddings,
            ),
        )

    return build


@OPTIMIZERS.register("adam")
@checked_by(check_adam)
def adam(
    learning_rate: float = 5e-5,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    layerwise_lr_decay: float = 1.0,
    head_learning_rate: float | None = None,
    clipnorm: float | None = 1.0,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
    gradient_accumulation_steps: int | None = None,
    lazy_embeddings: bool = False,
    fused_update: bool = False,
) -> OptimizerFactory:
    """Adam without weight decay; the other settings as for `adamw`."""

    def build(model: keras.Model, schedule: Any, total_steps: int) -> keras.optimizers.Optimizer:
        optimizer = ScaledFusedAdam if fused_update else ScaledAdam
        return optimizer(
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            **shared_arguments(
                model,
                schedule,
                total_steps,
                learning_rate,
                layerwise_lr_decay,
                head_learning_rate,
                clipnorm,
                use_ema,
                ema_momentum,
                gradient_accumulation_steps,
                lazy_embeddings,
            ),
        )

    return build


def clips_global_norm(optimizer: Any) -> bool:
    """Whether the optimizer clips the global norm (Keras' clipping or xtune's, lazy rows)."""
    return bool(
        getattr(optimizer, "global_clipnorm", None) or getattr(optimizer, "rows_clipnorm", None)
    )


def gradients_for_clipping(
    optimizer: Any, gradients: list[Any], variables: list[Any] | None = None
) -> list[Any]:
    """With global-norm clipping, `IndexedSlices` gradients made dense first: Keras sums the
    squares of an `IndexedSlices`' rows, which miscounts a token that appears twice in a
    batch (rows (1, 1, 1) twice give norm 2.45 instead of 3.46). A lazily updated variable's
    slices stay slices, each row once (the same norm, and nothing as large as the variable)."""
    if not clips_global_norm(optimizer):
        return gradients
    lazy = set(getattr(optimizer, "lazy_paths", []))
    variables = variables if variables is not None else [None] * len(gradients)
    prepared = []
    for gradient, variable in zip(gradients, variables, strict=True):
        if isinstance(gradient, tf.IndexedSlices):
            if variable is not None and variable.path in lazy:
                indices, values = unique_slices(gradient)
                gradient = tf.IndexedSlices(values, indices, gradient.dense_shape)
            else:
                gradient = tf.convert_to_tensor(gradient)
        prepared.append(gradient)
    return prepared
