"""Multi-layer pooling: pool each of the last k transformer layers, then combine them."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.heads.base import HEADS, Head
from xtune.heads.checks import check_multi_layer_head
from xtune.heads.pooling import masked_pool


@HEADS.register("multi_layer")
@keras.saving.register_keras_serializable(package="xtune")
class MultiLayerPoolingHead(Head):
    """Pool each of the last `last_layers` transformer layers and combine the vectors.

    Each layer's `[b, t, h]` states are pooled by `pooling` (`cls`, or the mask-aware `mean`,
    `max`, `min`). `combine` then joins the k vectors: `concat` (`[b, k * h]`), `mean`
    (`[b, h]`), or `weighted` (`[b, h]`): softmax-normalised weights over the layers, learned
    and initialised equal ("weighted layer pooling"). Dropout and the MLP stack follow.

    ```yaml
    head: {name: multi_layer, last_layers: 4, pooling: cls, combine: concat, units: [256]}
    head: {name: multi_layer, last_layers: 4, pooling: mean, combine: weighted}
    ```

    Args:
        last_layers: how many of the top transformer layers to use (default 4; at most the
            encoder's number of layers).
        pooling: how each layer is pooled: `cls` (default), `mean`, `max` or `min`.
        combine: `concat` (default), `mean` or `weighted`.
        units, activation, dropout, layer_norm: the MLP stack, see `Head`.
    """

    uses_hidden_states = True

    check_arguments = staticmethod(check_multi_layer_head)

    def __init__(
        self,
        last_layers: int = 4,
        pooling: str = "cls",
        combine: str = "concat",
        **kwargs: Any,
    ):
        MultiLayerPoolingHead.check_arguments(last_layers, pooling, combine)
        super().__init__(**kwargs)
        self.last_layers = last_layers
        self.pooling = pooling
        self.combine = combine
        self.layer_logits = None
        if combine == "weighted":
            # Zeros -> equal softmax weights at the start; float32 under mixed precision.
            self.layer_logits = self.add_weight(
                shape=(last_layers,), initializer="zeros", name="layer_logits"
            )

    def layer_weights(self) -> Any:
        """The current softmax weights over the used layers, lowest layer first."""
        if self.layer_logits is None:
            return ops.full((self.last_layers,), 1.0 / self.last_layers)
        return ops.softmax(self.layer_logits)

    def build_features_to_vector(self, features_shape: dict[str, Any]) -> tuple:
        self.check_layer_count(len(features_shape["hidden_states"]))
        width = features_shape["hidden_states"][-1][-1]
        return (None, width * self.last_layers if self.combine == "concat" else width)

    def check_layer_count(self, available: int) -> None:
        if self.last_layers > available:
            raise ValueError(
                f"multi_layer head: last_layers={self.last_layers} but the encoder has only "
                f"{available} transformer layers"
            )

    def features_to_vector(self, features: dict[str, Any], training: bool | None) -> Any:
        hidden_states = list(features["hidden_states"])
        self.check_layer_count(len(hidden_states))
        mask = features["padding_mask"]
        pooled = [
            masked_pool(states, mask, self.pooling) for states in hidden_states[-self.last_layers :]
        ]
        if self.combine == "concat":
            return ops.concatenate(pooled, axis=-1)
        stacked = ops.stack(pooled, axis=1)  # [b, k, h]
        if self.combine == "mean":
            return ops.mean(stacked, axis=1)
        weights = ops.cast(ops.softmax(self.layer_logits), stacked.dtype)
        return ops.einsum("bkh,k->bh", stacked, weights)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "last_layers": self.last_layers,
            "pooling": self.pooling,
            "combine": self.combine,
        }
