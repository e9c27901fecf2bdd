"""Mask-aware pooling of token states (cls, pooler, mean, max, min and their concatenations)."""

from __future__ import annotations

from typing import Any

import keras
import ml_dtypes
from keras import ops

from xtune.heads.base import HEADS, Head
from xtune.heads.checks import SEQUENCE_POOLING_MODES, check_pooling_head, pooling_modes


def masked_pool(states: Any, mask: Any, mode: str) -> Any:
    """Pool `[b, t, h]` states over real tokens only (`mask` `[b, t]`, 1 = token).

    Padding never contributes, whatever its states hold: `mean` divides by the number of
    real tokens, `max`/`min` replace padded positions by the lowest/highest finite value of
    the dtype (exact, and no inf arithmetic in bfloat16/float16). A row without any real
    token pools to zeros. `cls` is position 0, which BERT inputs always fill with [CLS].
    """
    if mode == "cls":
        return states[:, 0, :]
    keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
    if mode == "mean":
        # Accumulate in float32: a bfloat16 running sum over 100+ tokens keeps ~2 digits.
        weights = ops.cast(keep, "float32")
        total = ops.sum(ops.cast(states, "float32") * weights, axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        return ops.cast(total / count, states.dtype)
    if mode not in ("max", "min"):
        raise ValueError(f"unknown pooling {mode!r}; valid: {', '.join(SEQUENCE_POOLING_MODES)}")
    limits = ml_dtypes.finfo(keras.backend.standardize_dtype(states.dtype))
    if mode == "max":
        pooled = ops.max(ops.where(keep, states, ops.cast(float(limits.min), states.dtype)), axis=1)
    else:
        pooled = ops.min(ops.where(keep, states, ops.cast(float(limits.max), states.dtype)), axis=1)
    has_token = ops.any(keep, axis=1)
    return ops.where(has_token, pooled, ops.zeros_like(pooled))


def pooler_feature(features: dict[str, Any]) -> str:
    """`pooled_output`, or a clear error for an encoder family without a pooler."""
    if "pooled_output" not in features:
        raise ValueError(
            "head.pooling: 'pooler' needs an encoder with a pooler (BERT's pooled output), "
            "and this encoder has none; use cls or mean"
        )
    return "pooled_output"


def concatenate(vectors: list[Any]) -> Any:
    return vectors[0] if len(vectors) == 1 else ops.concatenate(vectors, axis=-1)


@HEADS.register("default")
@HEADS.register("pooling")
@keras.saving.register_keras_serializable(package="xtune")
class PoolingHead(Head):
    """Pool the last layer, then dropout and an optional MLP stack.

    `pooling` is one of `cls` (the [CLS] state), `pooler` (BERT's tanh pooled output),
    `mean`, `max`, `min` (over real tokens only), or a list of them to concatenate.

    ```yaml
    head: {name: default, pooling: pooler, units: [256]}          # bert + mlp(256)
    head: {name: pooling, pooling: mean, units: [512, 256]}       # mlp(512,256) + avg-pooling
    head: {name: pooling, pooling: [mean, max], dropout: 0.1}     # concat of mean and max
    ```

    Args:
        pooling: a mode or a list of modes (default `pooler`).
        units, activation, dropout, layer_norm: the MLP stack, see `Head`.
    """

    check_arguments = staticmethod(check_pooling_head)

    def __init__(self, pooling: str | list[str] = "pooler", **kwargs: Any):
        super().__init__(**kwargs)
        self.pooling = pooling
        self.modes = pooling_modes(pooling)

    def features_to_vector(self, features: dict[str, Any], training: bool | None) -> Any:
        pooled = []
        for mode in self.modes:
            if mode == "pooler":
                pooled.append(features[pooler_feature(features)])
            else:
                pooled.append(
                    masked_pool(features["sequence_output"], features["padding_mask"], mode)
                )
        return concatenate(pooled)

    def build_features_to_vector(self, features_shape: dict[str, Any]) -> tuple:
        widths = [
            features_shape[
                pooler_feature(features_shape) if mode == "pooler" else "sequence_output"
            ][-1]
            for mode in self.modes
        ]
        return (None, sum(widths))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pooling": self.pooling}
