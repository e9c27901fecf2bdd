"""The DistilBERT family: keras-hub `DistilBertBackbone` converted from a Hugging Face state
dict, BERT's WordPiece `vocab.txt`, `[CLS] a [SEP] b [SEP]` without segment ids, no pooler.

DistilBERT numbers positions from 0 like keras-hub, has no token-type embeddings and uses
LayerNorm epsilon 1e-12 everywhere (both hard-coded in Hugging Face's model and in
keras-hub's), so the conversion is one-to-one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import keras_hub

from xtune.encoders.adapter import (
    FAMILIES,
    EncoderLoadError,
    HfCheckpoint,
    HfNames,
    Packing,
    PieceTokenizer,
)
from xtune.encoders.bert import (
    BertAdapter,
    WordPieceTokenizer,
    hf_lowercase,
    read_vocabulary,
    wordpiece_hf_files,
    wordpiece_tokenizer,
)
from xtune.encoders.encoder import HF_HIDDEN_ACTS, HIDDEN_ACTIVATIONS
from xtune.encoders.hf_port import (
    assign,
    norm_tensors,
    port_norm,
    port_transformer_block,
    to_numpy,
    transformer_block_tensors,
)
from xtune.encoders.hf_port import tensor as hf_tensor
from xtune.encoders.hf_weights import read_hf_weights, strip_prefix
from xtune.encoders.transformer_family import KerasHubTransformerAdapter

EMBEDDING_LAYERS = ("token_and_position_embedding", "embeddings_layer_norm")
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
class DistilBertAdapter(KerasHubTransformerAdapter):
    """keras-hub's `DistilBertBackbone` with BERT's WordPiece tokenizer."""

    family = "distilbert"
    packing = Packing("bert", segment_ids=False)
    backbone_class = "DistilBertBackbone"
    embedding_layers = EMBEDDING_LAYERS
    hf_names = HfNames(
        base_prefix="distilbert",
        model_class="DistilBertModel",
        masked_lm_class="DistilBertForMaskedLM",
        masked_lm_prefixes=("vocab_transform.", "vocab_layer_norm.", "vocab_projector."),
        vocabulary_tensors=("vocab_projector.weight", "vocab_projector.bias"),
    )

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

    def hf_checkpoint(self, tokenizer: PieceTokenizer, word_embeddings: Any) -> HfCheckpoint:
        """config.json (`model_type: distilbert`), `DistilBertModel`'s tensors, vocab.txt and
        tokenizer_config.json."""
        tokenizer = wordpiece_tokenizer(tokenizer, "a Hugging Face DistilBERT folder")
        backbone = self.backbone
        config = {
            "model_type": "distilbert",
            "vocab_size": int(word_embeddings.shape[0]),
            "dim": int(backbone.hidden_dim),
            "hidden_dim": int(backbone.intermediate_dim),
            "n_layers": int(backbone.num_layers),
            "n_heads": int(backbone.num_heads),
            "max_position_embeddings": int(backbone.max_sequence_length),
            "activation": HF_HIDDEN_ACTS[self.hidden_activation],
            "dropout": float(backbone.dropout),
            "attention_dropout": float(backbone.dropout),
            "sinusoidal_pos_embds": False,
            "initializer_range": 0.02,
            "pad_token_id": tokenizer.pad_id,
            "dtype": "float32",
        }
        return HfCheckpoint(
            config,
            distilbert_hf_tensors(backbone, word_embeddings),
            wordpiece_hf_files(tokenizer, "DistilBertTokenizer", self.max_positions),
        )

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> DistilBertAdapter:
        """2 layers, hidden 16, over `BertAdapter.tiny_random`'s WordPiece vocabulary."""
        tokenizer = BertAdapter.tiny_random(vocabulary_size).tokenizer
        backbone = cls.tiny_backbone(tokenizer.vocabulary_size, **kwargs)
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


def distilbert_hf_tensors(backbone: keras.Model, word_embeddings: Any) -> dict[str, Any]:
    """The inverse of `port_distilbert_weights`."""
    embedding = backbone.get_layer("token_and_position_embedding")
    tensors = {
        "embeddings.word_embeddings.weight": to_numpy(word_embeddings),
        "embeddings.position_embeddings.weight": to_numpy(
            embedding.position_embedding.position_embeddings
        ),
        **norm_tensors(backbone.get_layer("embeddings_layer_norm"), "embeddings.LayerNorm"),
    }
    for index in range(backbone.num_layers):
        keys = {
            role: f"transformer.layer.{index}.{name}"
            for role, name in DISTILBERT_BLOCK_KEYS.items()
        }
        block = backbone.get_layer(f"transformer_layer_{index}")
        tensors.update(transformer_block_tensors(block, keys))
    return tensors
