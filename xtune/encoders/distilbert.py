"""The DistilBERT family: keras-hub `DistilBertBackbone` converted from a Hugging Face state
dict, BERT's WordPiece `vocab.txt`, `[CLS] a [SEP] b [SEP]` without segment ids, no pooler.

DistilBERT numbers positions from 0 like keras-hub, has no token-type embeddings and uses
LayerNorm epsilon 1e-12 everywhere (both hard-coded in Hugging Face's model and in
keras-hub's), so the conversion is one-to-one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import keras
import keras_hub

from xtune.encoders.adapter import (
    FAMILIES,
    EncoderAdapter,
    EncoderLoadError,
    Packing,
    PieceTokenizer,
    match_lora_layers,
)
from xtune.encoders.bert import BertAdapter, WordPieceTokenizer, hf_lowercase, read_vocabulary
from xtune.encoders.encoder import ACTIVATION_FUNCTIONS, HIDDEN_ACTIVATIONS
from xtune.encoders.hf_port import assign, port_norm, port_transformer_block, set_block_activation
from xtune.encoders.hf_port import tensor as hf_tensor
from xtune.encoders.hf_weights import read_hf_weights, strip_prefix

EMBEDDING_LAYERS = ("token_and_position_embedding", "embeddings_layer_norm")
TRANSFORMER_LAYER = re.compile(r"transformer_layer_(\d+)")
# HF names inside `transformer.layer.{i}.` for each role of a keras-hub TransformerEncoder.
DISTILBERT_BLOCK_KEYS = {
    "query": "attention.q_lin",
    "key": "attention.k_lin",
    "value": "attention.v_lin",
    "attention_output": "attention.out_lin",
    "attention_norm": "sa_layer_norm",
    "intermediate": "ffn.lin1",
    "output": "ffn.lin2",
    "output_norm": "output_layer_norm",
}


@FAMILIES.register("distilbert")
class DistilBertAdapter(EncoderAdapter):
    """keras-hub's `DistilBertBackbone` with BERT's WordPiece tokenizer."""

    family = "distilbert"
    packing = Packing("bert", segment_ids=False)

    def __init__(
        self,
        backbone: keras.Model,
        tokenizer: PieceTokenizer,
        source: str,
        hidden_activation: str = "gelu_exact",
    ):
        super().__init__(backbone, tokenizer, source)
        set_block_activation(self.blocks(), ACTIVATION_FUNCTIONS[hidden_activation])
        self.hidden_activation = hidden_activation
        self._features_model: keras.Model | None = None

    @property
    def num_layers(self) -> int:
        return int(self.backbone.num_layers)

    @property
    def max_positions(self) -> int:
        return int(self.backbone.max_sequence_length)

    def blocks(self) -> list[keras.layers.Layer]:
        return [self.backbone.get_layer(f"transformer_layer_{i}") for i in range(self.num_layers)]

    def features_model(self) -> keras.Model:
        """The backbone's graph, also exposing every transformer layer's output."""
        if self._features_model is None:
            outputs = {
                "sequence_output": self.backbone.output,
                "hidden_states": [block.output for block in self.blocks()],
            }
            self._features_model = keras.Model(
                self.backbone.input, outputs, name="distilbert_features"
            )
        return self._features_model

    def features(self, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = self.features_model()({name: inputs[name] for name in self.input_names})
        return {**outputs, "padding_mask": inputs["padding_mask"]}

    def parameter_group(self, variable_path: str) -> str | None:
        layer = variable_path.split("/")[0]
        if layer in EMBEDDING_LAYERS:
            return "embeddings"
        match = TRANSFORMER_LAYER.fullmatch(layer)
        return f"layer_{match.group(1)}" if match else None

    def lora_layers(self, targets: list[str]) -> list[keras.layers.Layer]:
        return match_lora_layers(self.blocks(), list(targets))

    @property
    def word_embeddings(self) -> keras.Variable:
        return self.backbone.token_embedding.embeddings

    def record(self) -> dict[str, Any]:
        return {
            "backbone_class": "DistilBertBackbone",
            "backbone_config": self.backbone.get_config(),
            "hidden_activation": self.hidden_activation,
            "source": self.source,
        }

    @classmethod
    def rebuild(cls, record: dict[str, Any], tokenizer: PieceTokenizer) -> DistilBertAdapter:
        config = dict(record["backbone_config"])
        config.pop("dtype", None)  # follow the current global policy
        backbone = keras_hub.models.DistilBertBackbone.from_config(config)
        return cls(backbone, tokenizer, record["source"], record["hidden_activation"])

    @classmethod
    def from_hf_folder(
        cls, folder: Path, lowercase: bool | None = None, dropout: float | None = None
    ) -> DistilBertAdapter:
        """config.json (`model_type: distilbert`), model.safetensors or pytorch_model.bin, and
        vocab.txt; `do_lower_case` from tokenizer_config.json unless `lowercase` is given."""
        folder = Path(folder)
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        activation = config.get("activation", "gelu")
        if activation not in HIDDEN_ACTIVATIONS:
            raise EncoderLoadError(
                f"{config_path}: activation {activation!r} is not supported; "
                f"valid: {', '.join(HIDDEN_ACTIVATIONS)}"
            )
        lowercase = hf_lowercase(folder) if lowercase is None else lowercase
        tokenizer = WordPieceTokenizer(read_vocabulary(folder / "vocab.txt"), lowercase)
        weights = strip_prefix(read_hf_weights(folder), "distilbert")
        backbone = keras_hub.models.DistilBertBackbone(
            **backbone_kwargs(config, config_path, dropout)
        )
        port_distilbert_weights(backbone, weights, folder)
        return cls(backbone, tokenizer, f"hf:{folder}", HIDDEN_ACTIVATIONS[activation])

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> DistilBertAdapter:
        """2 layers, hidden 16, over `BertAdapter.tiny_random`'s WordPiece vocabulary."""
        tokenizer = BertAdapter.tiny_random(vocabulary_size).tokenizer
        options = {
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 16,
            "intermediate_dim": 32,
            "max_sequence_length": 64,
            "dropout": 0.0,
            **kwargs,
        }
        backbone = keras_hub.models.DistilBertBackbone(
            vocabulary_size=tokenizer.vocabulary_size, **options
        )
        return cls(backbone, tokenizer, "tiny random DistilBERT")


def backbone_kwargs(config: dict, source: Path, dropout: float | None) -> dict[str, Any]:
    try:
        return {
            "vocabulary_size": config["vocab_size"],
            "num_layers": config["n_layers"],
            "num_heads": config["n_heads"],
            "hidden_dim": config["dim"],
            "intermediate_dim": config["hidden_dim"],
            "dropout": config.get("dropout", 0.1) if dropout is None else dropout,
            "max_sequence_length": config["max_position_embeddings"],
        }
    except KeyError as error:
        raise EncoderLoadError(f"{source}: a DistilBERT config needs {error.args[0]!r}") from None


def port_distilbert_weights(backbone: keras.Model, weights: dict, source: Path) -> None:
    """HF `DistilBertModel` tensors (without the `distilbert.` prefix) into the backbone."""
    embedding = backbone.get_layer("token_and_position_embedding")
    for variable, key in (
        (embedding.token_embedding.embeddings, "embeddings.word_embeddings.weight"),
        (embedding.position_embedding.position_embeddings, "embeddings.position_embeddings.weight"),
    ):
        assign(variable, hf_tensor(weights, key, source), key, source)
    port_norm(backbone.get_layer("embeddings_layer_norm"), weights, "embeddings.LayerNorm", source)
    for index in range(backbone.num_layers):
        keys = {
            role: f"transformer.layer.{index}.{name}"
            for role, name in DISTILBERT_BLOCK_KEYS.items()
        }
        port_transformer_block(
            backbone.get_layer(f"transformer_layer_{index}"), weights, keys, source
        )
