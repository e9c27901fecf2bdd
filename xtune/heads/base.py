"""The `Head` contract and the MLP block every head can end with."""

from __future__ import annotations

from typing import Any

import keras

from xtune.heads.checks import check_head
from xtune.registry import Registry

HEADS = Registry("head")


class Head(keras.layers.Layer):
    """Maps the encoder features dict to a `[batch, dim]` vector.

    Reads `sequence_output` `[b, t, h]`, `pooled_output` `[b, h]`, `padding_mask` `[b, t]`
    and, when `uses_hidden_states` is True, `hidden_states` (a list, one `[b, t, h]` per
    transformer layer). Subclasses implement `features_to_vector` and
    `build_features_to_vector` (builds their own sub-layers from the feature shapes and returns
    the vector's shape); dropout and the shared MLP stack (`units`, `activation`, `dropout`,
    `layer_norm`) follow. `units: []` (the default) means no MLP: dropout only.
    """

    uses_hidden_states = False

    # Raises `ValueError` for arguments invalid by meaning; builds nothing, so the config calls
    # it for every run before any training. Subclasses check theirs, then the MLP stack's.
    check_arguments = staticmethod(check_head)

    def __init__(
        self,
        units: list[int] | None = None,
        activation: str = "gelu",
        dropout: float = 0.1,
        layer_norm: bool = False,
        **kwargs: Any,
    ):
        Head.check_arguments(units, activation, dropout, layer_norm)
        super().__init__(**kwargs)
        self.units = list(units or [])
        self.activation = activation
        self.dropout = dropout
        self.layer_norm = layer_norm
        self.input_dropout = keras.layers.Dropout(dropout, name="input_dropout")
        self.mlp_layers = []
        for i, width in enumerate(self.units):
            block = [keras.layers.Dense(width, activation=activation, name=f"mlp_{i}")]
            if layer_norm:
                block.append(keras.layers.LayerNormalization(epsilon=1e-6, name=f"mlp_{i}_norm"))
            block.append(keras.layers.Dropout(dropout, name=f"mlp_{i}_dropout"))
            self.mlp_layers.append(block)

    def features_to_vector(self, features: dict[str, Any], training: bool | None) -> Any:
        raise NotImplementedError

    def build_features_to_vector(self, features_shape: dict[str, Any]) -> tuple:
        """Build the sub-layers `features_to_vector` uses; return the vector's shape."""
        raise NotImplementedError

    def build(self, features_shape: dict[str, Any]) -> None:
        # Building every sub-layer here (not lazily in `call`) lets a head restored by
        # `keras.saving` receive its weights before it is first called.
        shape = tuple(self.build_features_to_vector(features_shape))
        self.input_dropout.build(shape)
        for block in self.mlp_layers:
            for layer in block:
                layer.build(shape)
                shape = tuple(layer.compute_output_shape(shape))
        self.built = True

    def call(self, features: dict[str, Any], training: bool | None = None) -> Any:
        x = self.features_to_vector(features, training)
        x = self.input_dropout(x, training=training)
        for block in self.mlp_layers:
            for layer in block:
                x = (
                    layer(x, training=training)
                    if isinstance(layer, keras.layers.Dropout)
                    else layer(x)
                )
        return x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": self.activation,
                "dropout": self.dropout,
                "layer_norm": self.layer_norm,
            }
        )
        return config


def get_head(spec: Any) -> Head:
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    return HEADS.build(spec)
