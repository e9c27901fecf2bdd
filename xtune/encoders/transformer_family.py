"""The shared adapter of keras-hub encoder families built from `TransformerEncoder` blocks."""

from __future__ import annotations

import re
from typing import Any

import keras
import keras_hub

from xtune.encoders.adapter import EncoderAdapter, PieceTokenizer, match_lora_layers
from xtune.encoders.encoder import ACTIVATION_FUNCTIONS
from xtune.encoders.hf_port import set_block_activation
from xtune.encoders.keras_hub_internals import attention_norm, feedforward_norm

TRANSFORMER_LAYER = re.compile(r"transformer_layer_(\d+)")
# The tiny random backbones of the shared contract tests; a family's kwargs override them.
TINY_OPTIONS = {
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "max_sequence_length": 64,
    "dropout": 0.0,
}


class KerasHubTransformerAdapter(EncoderAdapter):
    """A keras-hub backbone with `transformer_layer_{i}` blocks: the activation (and, where
    the family records one, the layer-norm epsilon) set on the built blocks, an optional
    checkpoint pooler (tanh dense on the first token), features with every block's output."""

    backbone_class: str  # the keras_hub.models class, as the run record names it
    embedding_layers: tuple[str, ...]
    default_activation = "gelu_exact"
    # keras-hub's epsilon for the family's layer norms; None: the family does not record one.
    keras_hub_epsilon: float | None = None
    optional_pooler = False  # whether the record says if the checkpoint's pooler is there
    supports_tuning = True
    pooler_layer = "pooler_dense"

    def __init__(
        self,
        backbone: keras.Model,
        tokenizer: PieceTokenizer,
        source: str,
        hidden_activation: str | None = None,
        layer_norm_epsilon: float | None = None,
        pooler: bool = False,
    ):
        super().__init__(backbone, tokenizer, source)
        self.hidden_activation = hidden_activation or self.default_activation
        set_block_activation(self.blocks(), ACTIVATION_FUNCTIONS[self.hidden_activation])
        self.layer_norm_epsilon = layer_norm_epsilon
        if self.keras_hub_epsilon is not None:
            if layer_norm_epsilon is None:
                self.layer_norm_epsilon = self.keras_hub_epsilon
            for norm in self.layer_norms():
                norm.epsilon = self.layer_norm_epsilon
        self.pooler: keras.layers.Dense | None = None
        if pooler:
            hidden = int(backbone.hidden_dim)
            self.pooler = keras.layers.Dense(hidden, activation="tanh", name=self.pooler_layer)
            self.pooler.build((None, hidden))
        self._features_model: keras.Model | None = None

    @property
    def num_layers(self) -> int:
        return int(self.backbone.num_layers)

    @property
    def max_positions(self) -> int:
        return int(self.backbone.max_sequence_length)

    def blocks(self) -> list[keras.layers.Layer]:
        return [self.backbone.get_layer(f"transformer_layer_{i}") for i in range(self.num_layers)]

    def pooled_output_layer(self) -> keras.layers.Layer | None:
        return self.pooler

    def layer_norms(self) -> list[keras.layers.Layer]:
        norms = [self.backbone.get_layer("embeddings_layer_norm")]
        for block in self.blocks():
            norms += [attention_norm(block), feedforward_norm(block)]
        return norms

    def features_model(self) -> keras.Model:
        """The backbone's graph, also exposing every transformer layer (and the pooler)."""
        if self.tuning is not None:
            return self.tuned_features_model()
        if self._features_model is None:
            sequence = self.backbone.output
            outputs = {
                "sequence_output": sequence,
                "hidden_states": [block.output for block in self.blocks()],
            }
            if self.pooler is not None:
                outputs["pooled_output"] = self.pooler(sequence[:, 0, :])
            self._features_model = keras.Model(
                self.backbone.input, outputs, name=f"{self.family}_features"
            )
        return self._features_model

    def features(self, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = self.features_model()({name: inputs[name] for name in self.input_names})
        return {**outputs, "padding_mask": inputs["padding_mask"]}

    def parameter_group(self, variable_path: str) -> str | None:
        layer = variable_path.split("/")[0]
        if layer in self.embedding_layers:
            return "embeddings"
        if self.pooler is not None and layer == self.pooler_layer:
            return "pooler"
        match = TRANSFORMER_LAYER.fullmatch(layer)
        return f"layer_{match.group(1)}" if match else None

    def lora_layers(self, targets: list[str]) -> list[keras.layers.Layer]:
        return match_lora_layers(self.blocks(), list(targets))

    @property
    def word_embeddings(self) -> keras.Variable:
        return self.backbone.token_embedding.embeddings

    def record(self) -> dict[str, Any]:
        record = {
            "backbone_class": self.backbone_class,
            "backbone_config": self.backbone.get_config(),
            "hidden_activation": self.hidden_activation,
        }
        if self.keras_hub_epsilon is not None:
            record["layer_norm_epsilon"] = self.layer_norm_epsilon
        if self.optional_pooler:
            record["pooler"] = self.pooler is not None
        return {**record, "source": self.source}

    @classmethod
    def rebuild(cls, record: dict[str, Any], tokenizer: PieceTokenizer) -> EncoderAdapter:
        config = dict(record["backbone_config"])
        config.pop("dtype", None)  # follow the current global policy
        backbone = getattr(keras_hub.models, cls.backbone_class).from_config(config)
        options: dict[str, Any] = {"hidden_activation": record["hidden_activation"]}
        if cls.keras_hub_epsilon is not None:
            options["layer_norm_epsilon"] = record.get("layer_norm_epsilon")
        if cls.optional_pooler:
            options["pooler"] = record["pooler"]
        return cls(backbone, tokenizer, record["source"], **options)

    @classmethod
    def tiny_backbone(cls, vocabulary_size: int, **kwargs: Any) -> keras.Model:
        """The family's backbone with `TINY_OPTIONS`, overridden by `kwargs`."""
        backbone_type = getattr(keras_hub.models, cls.backbone_class)
        return backbone_type(vocabulary_size=vocabulary_size, **{**TINY_OPTIONS, **kwargs})
