"""`LoadedEncoder`: backbone + tokenizer settings, and how to rebuild it from a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import keras_hub

from xtune.registry import Registry

ENCODERS = Registry("encoder")

# Hugging Face `hidden_act` -> the Keras activation that reproduces it.
HIDDEN_ACTIVATIONS = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_approximate": "gelu_approximate",
    "gelu_exact": "gelu_exact",
    "relu": "relu",
}


@keras.saving.register_keras_serializable(package="xtune")
def gelu_exact(x):
    return keras.activations.gelu(x, approximate=False)


@keras.saving.register_keras_serializable(package="xtune")
def gelu_approximate(x):
    return keras.activations.gelu(x, approximate=True)


ACTIVATION_FUNCTIONS = {
    "gelu_exact": gelu_exact,
    "gelu_approximate": gelu_approximate,
    "relu": keras.activations.relu,
}


@dataclass
class LoadedEncoder:
    """A backbone and everything needed to tokenize for it exactly like its original."""

    backbone: keras.Model
    vocabulary: list[str]
    lowercase: bool
    hidden_activation: str
    source: str

    @property
    def num_layers(self) -> int:
        return int(self.backbone.num_layers)

    def record(self) -> dict[str, Any]:
        """What a run folder stores to rebuild this encoder without the original checkpoint."""
        return {
            "backbone_class": type(self.backbone).__name__,
            "backbone_config": self.backbone.get_config(),
            "hidden_activation": self.hidden_activation,
            "lowercase": self.lowercase,
            "source": self.source,
        }


def set_hidden_activation(backbone: keras.Model, activation: str) -> None:
    """Swap the feed-forward activation of every transformer block.

    keras-hub's BERT hard-codes tanh-approximate GELU; checkpoints trained with exact GELU
    (`hidden_act: gelu`) drift by ~4e-3 at the last layer unless it is swapped back.
    """
    if activation not in ACTIVATION_FUNCTIONS:
        raise ValueError(
            f"unknown hidden activation {activation!r}; valid: {', '.join(ACTIVATION_FUNCTIONS)}"
        )
    function = ACTIVATION_FUNCTIONS[activation]
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        block.activation = function
        block._feedforward_intermediate_dense.activation = function


def rebuild_encoder(record: dict[str, Any], vocabulary: list[str]) -> LoadedEncoder:
    """Build the architecture stored by `LoadedEncoder.record()`; weights come separately."""
    cls = getattr(keras_hub.models, record["backbone_class"])
    config = dict(record["backbone_config"])
    config.pop("dtype", None)  # follow the current global policy
    backbone = cls.from_config(config)
    set_hidden_activation(backbone, record["hidden_activation"])
    return LoadedEncoder(
        backbone=backbone,
        vocabulary=vocabulary,
        lowercase=record["lowercase"],
        hidden_activation=record["hidden_activation"],
        source=record["source"],
    )


def load_encoder(spec: Any) -> LoadedEncoder:
    """Load an encoder from a `ComponentSpec` or a `{"name": ..., **kwargs}` dict."""
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    return ENCODERS.build(spec)
