"""The arguments of optimizers, schedules and adversarial methods checked by meaning, without
TensorFlow.

Each registered builder's `check_arguments` is one of these functions (`checked_by` for the
optimizer and schedule factories, which call it too), so the config (through the component
catalog) and the builders refuse alike. Each takes its builder's arguments with the same
defaults and raises `ValueError("ARGUMENT: ...")`.
"""

from __future__ import annotations

from typing import Any

from xtune.registry import check_number


def check_adam_arguments(
    learning_rate: Any,
    beta_1: Any,
    beta_2: Any,
    epsilon: Any,
    layerwise_lr_decay: Any,
    head_learning_rate: Any,
    clipnorm: Any,
    ema_momentum: Any,
    gradient_accumulation_steps: Any,
) -> None:
    """The checks both optimizers share."""
    check_number("learning_rate", learning_rate, 0.0, open_low=True)
    if head_learning_rate is not None:
        check_number("head_learning_rate", head_learning_rate, 0.0, open_low=True)
    check_number("beta_1", beta_1, 0.0, 1.0, open_high=True)
    check_number("beta_2", beta_2, 0.0, 1.0, open_high=True)
    check_number("epsilon", epsilon, 0.0, open_low=True)
    check_number("layerwise_lr_decay", layerwise_lr_decay, 0.0, 1.0, open_low=True)
    if clipnorm is not None:
        check_number("clipnorm", clipnorm, 0.0, open_low=True)
    check_number("ema_momentum", ema_momentum, 0.0, 1.0, open_high=True)
    if gradient_accumulation_steps is not None:
        check_number(
            "gradient_accumulation_steps", gradient_accumulation_steps, 1, 10_000, integer=True
        )


def check_adamw(
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
) -> None:
    check_adam_arguments(
        learning_rate,
        beta_1,
        beta_2,
        epsilon,
        layerwise_lr_decay,
        head_learning_rate,
        clipnorm,
        ema_momentum,
        gradient_accumulation_steps,
    )
    check_number("weight_decay", weight_decay, 0.0, 1.0)


def check_adam(
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
) -> None:
    check_adam_arguments(
        learning_rate,
        beta_1,
        beta_2,
        epsilon,
        layerwise_lr_decay,
        head_learning_rate,
        clipnorm,
        ema_momentum,
        gradient_accumulation_steps,
    )


def check_schedule_arguments(warmup_steps: Any, warmup_ratio: Any, final_ratio: Any = 0.0) -> None:
    """The checks every schedule shares."""
    check_number("warmup_steps", warmup_steps, 0, 10**9, integer=True)
    check_number("warmup_ratio", warmup_ratio, 0.0, 1.0, open_high=True)
    check_number("final_ratio", final_ratio, 0.0, 1.0)
    if warmup_steps and warmup_ratio:
        raise ValueError("warmup_ratio: give warmup_steps or warmup_ratio, not both")


def check_constant_schedule(warmup_steps: int = 0, warmup_ratio: float = 0.0) -> None:
    check_schedule_arguments(warmup_steps, warmup_ratio)


def check_decaying_schedule(
    warmup_steps: int = 0, warmup_ratio: float = 0.0, final_ratio: float = 0.0
) -> None:
    """The `linear` and `cosine` schedules: warm-up, then decay to `final_ratio * peak`."""
    check_schedule_arguments(warmup_steps, warmup_ratio, final_ratio)


def check_fgm(epsilon: float = 1.0) -> None:
    check_number("epsilon", epsilon, 0.0, open_low=True)


def check_pgd(epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3) -> None:
    check_number("epsilon", epsilon, 0.0, open_low=True)
    check_number("alpha", alpha, 0.0, open_low=True)
    check_number("steps", steps, 1, 100, integer=True)
