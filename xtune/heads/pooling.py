"""Mask-aware pooling of token states (cls, pooler, mean, max, min and their concatenations)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.heads.base import HEADS, Head

POOLING_MODES = ("cls", "pooler", "mean", "max", "min")


def masked_pool(states: Any, mask: Any, mode: str) -> Any:
    """Pool `[b, t, h]` states over real tokens only (`mask` `[b, t]`, 1 = token)."""
    if mode == "cls":
        return states[:, 0, :]
    mask = ops.cast(ops.expand_dims(mask, -1), states.dtype)
    if mode == "mean":
        total = ops.sum(states * mask, axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1), 1.0)
    # A large finite fill keeps max/min exact without inf arithmetic in low precision.
    fill = ops.cast(1e4 if states.dtype in ("float16", "bfloat16") else 1e9, states.dtype)
    if mode == "max":
        return ops.max(ops.where(mask > 0, states, -fill), axis=1)
    if mode == "min":
        return ops.min(ops.where(mask > 0, states, fill), axis=1)
    raise ValueError(f"unknown pooling {mode!r}; valid: {', '.join(POOLING_MODES)}")


def pooling_modes(pooling: str | list[str]) -> list[str]:
    modes = [pooling] if isinstance(pooling, str) else list(pooling)
    for mode in modes:
        if mode not in POOLING_MODES:
            raise ValueError(f"unknown pooling {mode!r}; valid: {', '.join(POOLING_MODES)}")
    return modes


@HEADS.register("default")
@HEADS.register("pooling")
@keras.saving.register_keras_serializable(package="xtune")
class PoolingHead(Head):
    """Pool the last layer (`cls`, `pooler`, `mean`, `max`, `min`, or a list to concatenate),
    then dropout and an optional MLP stack.

    ```yaml
    head: {name: pooling, pooling: [mean, max], units: [512, 256], dropout: 0.1}
    ```
    """

    def __init__(self, pooling: str | list[str] = "pooler", **kwargs: Any):
        super().__init__(**kwargs)
        self.pooling = pooling
        self.modes = pooling_modes(pooling)

    def features_to_vector(self, features: dict[str, Any], training: bool | None) -> Any:
        pooled = []
        for mode in self.modes:
            if mode == "pooler":
                pooled.append(features["pooled_output"])
            else:
                pooled.append(
                    masked_pool(features["sequence_output"], features["padding_mask"], mode)
                )
        return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pooling": self.pooling}
