"""Learning-rate schedules with linear warm-up, built on Keras schedules.

Steps count optimizer iterations (batches), from 0. Warm-up rises linearly and uses the peak
rate at its last step (`warmup_steps - 1`), so no step is spent at rate 0; the decay then
starts from the peak at step `warmup_steps` and reaches `final_ratio * peak` at the last
step of training (`total_steps - 1`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from xtune.registry import Registry, checked_by
from xtune.training.checks import check_constant_schedule, check_decaying_schedule

SCHEDULES = Registry("schedule")

# A registered schedule returns a factory: (peak learning rate, total steps) -> schedule.
ScheduleFactory = Callable[[float, int], Any]


def warmup_steps_of(total_steps: int, warmup_steps: int, warmup_ratio: float) -> int:
    return int(warmup_steps or round(warmup_ratio * total_steps))


def decay_steps_of(total_steps: int, warm: int) -> int:
    """Steps from the end of warm-up to the last step, where the decay reaches its final rate."""
    return max(total_steps - 1 - warm, 1)


@keras.saving.register_keras_serializable(package="xtune")
class WarmupThen(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then `after(step - warmup_steps)`."""

    def __init__(self, peak: float, warmup_steps: int, after: Any):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.after = after

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        rising = self.peak * (step + 1.0) / warmup
        decayed = self.after(ops.maximum(step - self.warmup_steps, 0.0))
        return ops.where(step < self.warmup_steps, rising, decayed)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "after": keras.optimizers.schedules.serialize(self.after),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmupThen:
        config = dict(config)
        config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)


@SCHEDULES.register("constant")
@checked_by(check_constant_schedule)
def constant(warmup_steps: int = 0, warmup_ratio: float = 0.0) -> ScheduleFactory:
    """The peak rate throughout, after an optional warm-up."""

    def build(peak: float, total_steps: int) -> Any:
        warm = warmup_steps_of(total_steps, warmup_steps, warmup_ratio)
        flat = keras.optimizers.schedules.PolynomialDecay(peak, max(total_steps, 1), peak)
        return WarmupThen(peak, warm, flat) if warm else peak

    return build


@SCHEDULES.register("linear")
@checked_by(check_decaying_schedule)
def linear(
    warmup_steps: int = 0, warmup_ratio: float = 0.0, final_ratio: float = 0.0
) -> ScheduleFactory:
    """Warm-up, then linear decay to `final_ratio * peak` at the last step (BERT's schedule)."""

    def build(peak: float, total_steps: int) -> Any:
        warm = warmup_steps_of(total_steps, warmup_steps, warmup_ratio)
        decay = keras.optimizers.schedules.PolynomialDecay(
            peak, decay_steps_of(total_steps, warm), peak * final_ratio, power=1.0
        )
        return WarmupThen(peak, warm, decay) if warm else decay

    return build


@SCHEDULES.register("cosine")
@checked_by(check_decaying_schedule)
def cosine(
    warmup_steps: int = 0, warmup_ratio: float = 0.0, final_ratio: float = 0.0
) -> ScheduleFactory:
    """Warm-up, then cosine decay to `final_ratio * peak`."""

    def build(peak: float, total_steps: int) -> Any:
        warm = warmup_steps_of(total_steps, warmup_steps, warmup_ratio)
        decay = keras.optimizers.schedules.CosineDecay(
            peak, decay_steps_of(total_steps, warm), alpha=final_ratio
        )
        return WarmupThen(peak, warm, decay) if warm else decay

    return build
