"""Attention pooling: a learned query scores every token, masked softmax, weighted sum."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.heads.base import HEADS, Head
from xtune.heads.checks import check_attention_head

# Score given to padded tokens; exp() of it is exactly 0 in float32, where scores are kept.
MASKED_SCORE = -1e9


@HEADS.register("attention")
@keras.saving.register_keras_serializable(package="xtune")
class AttentionPoolingHead(Head):
    """Weighted sum of the token states, weights from a learned query; then the MLP stack.

    `score_t = q . tanh(W h_t + b)` when `attention_units` is set, else `score_t = q . h_t`;
    `a = softmax(score)` over real tokens only (padding gets weight exactly 0); the vector is
    `sum_t a_t h_t` (`[b, h]`). Scores, softmax and the sum run in float32 under mixed
    precision. Yang et al., "Hierarchical Attention Networks for Document Classification",
    NAACL 2016.

    ```yaml
    head: {name: attention, units: [256]}
    head: {name: attention, attention_units: 128, dropout: 0.1}
    ```

    Args:
        attention_units: width of the tanh projection before the query (default None: the
            query reads the token states directly).
        units, activation, dropout, layer_norm: the MLP stack, see `Head`.
    """

    check_arguments = staticmethod(check_attention_head)

    def __init__(self, attention_units: int | None = None, **kwargs: Any):
        AttentionPoolingHead.check_arguments(attention_units=attention_units)
        super().__init__(**kwargs)
        self.attention_units = attention_units
        self.projection = (
            keras.layers.Dense(attention_units, activation="tanh", name="attention_projection")
            if attention_units
            else None
        )
        self.query = keras.layers.Dense(1, use_bias=False, name="attention_query")

    def build_features_to_vector(self, features_shape: dict[str, Any]) -> tuple:
        shape = tuple(features_shape["sequence_output"])
        if self.projection is not None:
            self.projection.build(shape)
            shape = shape[:-1] + (self.attention_units,)
        self.query.build(shape)
        return (None, features_shape["sequence_output"][-1])

    def token_weights(self, features: dict[str, Any]) -> Any:
        """Attention weights `[b, t]` (float32); each row sums to 1 over its real tokens."""
        states = features["sequence_output"]
        keys = self.projection(states) if self.projection is not None else states
        scores = ops.cast(ops.squeeze(self.query(keys), -1), "float32")
        keep = ops.cast(features["padding_mask"], "bool")
        scores = ops.where(keep, scores, MASKED_SCORE)
        # The final mask only matters for a row without tokens: it pools to zeros.
        return ops.softmax(scores, axis=-1) * ops.cast(keep, "float32")

    def features_to_vector(self, features: dict[str, Any], training: bool | None) -> Any:
        states = features["sequence_output"]
        weights = self.token_weights(features)
        pooled = ops.einsum("bt,bth->bh", weights, ops.cast(states, "float32"))
        return ops.cast(pooled, states.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "attention_units": self.attention_units}
