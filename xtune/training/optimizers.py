"""Optimizers by name: AdamW (decay excluded from biases and LayerNorm) and Adam."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from xtune.registry import Registry
from xtune.training.schedules import SCHEDULES  # noqa: F401  (re-exported for the config)

OPTIMIZERS = Registry("optimizer")

# Variables whose path contains one of these get no weight decay (biases and LayerNorm).
NO_DECAY_NAMES = ["bias", "gamma", "beta"]

# A registered optimizer returns a factory: (model, schedule factory, total steps) -> optimizer.
OptimizerFactory = Callable[[keras.Model, Any, int], keras.optimizers.Optimizer]


def common_arguments(clipnorm: float | None, use_ema: bool, ema_momentum: float) -> dict[str, Any]:
    return {"global_clipnorm": clipnorm, "use_ema": use_ema, "ema_momentum": ema_momentum}


@OPTIMIZERS.register("adamw")
def adamw(
    learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    clipnorm: float | None = 1.0,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
) -> OptimizerFactory:
    def build(model: keras.Model, schedule: Any, total_steps: int) -> keras.optimizers.Optimizer:
        optimizer = keras.optimizers.AdamW(
            learning_rate=schedule(learning_rate, total_steps),
            weight_decay=weight_decay,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            **common_arguments(clipnorm, use_ema, ema_momentum),
        )
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
        return optimizer

    return build


@OPTIMIZERS.register("adam")
def adam(
    learning_rate: float = 5e-5,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    clipnorm: float | None = 1.0,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
) -> OptimizerFactory:
    def build(model: keras.Model, schedule: Any, total_steps: int) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(
            learning_rate=schedule(learning_rate, total_steps),
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            **common_arguments(clipnorm, use_ema, ema_momentum),
        )

    return build
