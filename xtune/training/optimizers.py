"""Optimizers by name: AdamW (decay excluded from biases and LayerNorm) and Adam, with per-group
learning-rate multipliers (layer-wise decay, head learning rate) applied to the step itself.

Adam is invariant to the scale of the gradient, so a learning-rate multiplier cannot be put on
the gradient: `ScaledAdam` / `ScaledAdamW` multiply the learning rate of each variable's Adam
step, and of its decoupled weight decay, by that variable's multiplier. Keras'
`MultiOptimizer` would need one optimizer per group, and then global-norm clipping,
gradient accumulation and EMA would each work per group instead of over the whole model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
from keras import ops

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
        self.step_multipliers: dict[int, float] = {}

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        strategy = tf.distribute.get_strategy()
        for variable in var_list:
            multiplier = float(self.learning_rate_multipliers.get(variable.path, 1.0))
            # `update_step` gets the backend variable (`variable.value`) on TensorFlow, and
            # under a `tf.distribute` strategy each replica's copy of it.
            copies = strategy.experimental_local_results(variable.value)
            for form in (variable, variable.value, *copies):
                self.step_multipliers[id(form)] = multiplier

    def multiplier_of(self, variable: Any) -> float:
        return self.step_multipliers[id(variable)]

    def decays(self, variable: Any) -> bool:
        if self.decoupled_weight_decay is None:
            return False
        return not any(re.search(name, variable.name) for name in self.no_decay_names)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        multiplier = self.multiplier_of(variable)
        if self.decays(variable):
            lr = ops.cast(self.learning_rate, variable.dtype) * multiplier
            wd = ops.cast(self.decoupled_weight_decay, variable.dtype)
            self.assign_sub(variable, variable * wd * lr)
        super().update_step(gradient, variable, learning_rate * multiplier)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "learning_rate_multipliers": self.learning_rate_multipliers,
            "base_learning_rate": self.base_learning_rate,
            "decoupled_weight_decay": self.decoupled_weight_decay,
            "no_decay_names": self.no_decay_names,
        }


@keras.saving.register_keras_serializable(package="xtune")
class ScaledAdamW(StepScaling, keras.optimizers.Adam):
    """AdamW with per-variable learning-rate multipliers (see `StepScaling`)."""


@keras.saving.register_keras_serializable(package="xtune")
class ScaledAdam(StepScaling, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers (see `StepScaling`)."""


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
) -> dict[str, Any]:
    """Constructor arguments both optimizers take, resolved against the model."""
    head_multiplier = 1.0 if head_learning_rate is None else head_learning_rate / learning_rate
    return {
        "learning_rate": schedule(learning_rate, total_steps),
        "learning_rate_multipliers": variable_multipliers(
            model, layerwise_lr_decay, head_multiplier
        ),
        "base_learning_rate": learning_rate,
        # Keras clips each replica's share of the summed gradient (xtune.training.distribution).
        "global_clipnorm": per_replica_clipnorm(clipnorm),
        "use_ema": use_ema,
        "ema_momentum": ema_momentum,
        # Keras wants >= 2 or None.
        "gradient_accumulation_steps": gradient_accumulation_steps
        if gradient_accumulation_steps and gradient_accumulation_steps > 1
        else None,
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
) -> OptimizerFactory:
    """AdamW; no weight decay on biases and LayerNorm. `layerwise_lr_decay` and
    `head_learning_rate` set per-group rates (`xtune.training.layerwise`), `clipnorm` clips
    the global norm, `gradient_accumulation_steps` averages that many batches per update
    (schedule steps still count batches), `use_ema` keeps an exponential moving average of
    the weights that the dev evaluation uses."""

    def build(model: keras.Model, schedule: Any, total_steps: int) -> keras.optimizers.Optimizer:
        return ScaledAdamW(
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
) -> OptimizerFactory:
    """Adam without weight decay; the other settings as for `adamw`."""

    def build(model: keras.Model, schedule: Any, total_steps: int) -> keras.optimizers.Optimizer:
        return ScaledAdam(
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
            ),
        )

    return build


def clips_global_norm(optimizer: Any) -> bool:
    return bool(getattr(optimizer, "global_clipnorm", None))


def dense_for_clipping(optimizer: Any, gradients: list[Any]) -> list[Any]:
    """With global-norm clipping, `IndexedSlices` gradients made dense first: Keras sums the
    squares of an `IndexedSlices`' rows, which miscounts a token that appears twice in a
    batch (rows (1, 1, 1) twice give norm 2.45 instead of 3.46)."""
    if not clips_global_norm(optimizer):
        return gradients
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
