"""Copy Hugging Face (PyTorch layout) tensors into keras-hub layers, shape-checked, and back.

`port_*` read a checkpoint into a backbone; `*_tensors` are their inverses, which
`xtune/encoders/hf_folder_writer.py` writes into a Hugging Face folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from xtune.encoders.adapter import EncoderLoadError
from xtune.encoders.hf_weights import weights_file_name
from xtune.encoders.keras_hub_internals import (
    attention_layer,
    attention_norm,
    feedforward_dense,
    feedforward_norm,
    set_feedforward_activation,
)

# HF names inside `encoder.layer.{i}.` for each role of a keras-hub TransformerEncoder, as
# BERT, RoBERTa and XLM-R checkpoints name them.
BERT_BLOCK_KEYS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "output_norm": "output.LayerNorm",
}


def tensor(weights: dict[str, np.ndarray], key: str, source: Path) -> np.ndarray:
    if key not in weights:
        raise EncoderLoadError(
            f"{Path(source) / weights_file_name(source)}: has no tensor {key!r}; the model "
            "needs it (does config.json's model_type match the weights?)"
        )
    return np.asarray(weights[key], dtype=np.float32)


def assign(variable: keras.Variable, value: np.ndarray, key: str, source: Path) -> None:
    """`variable.assign(value)`, or one error naming the tensor and both shapes."""
    if tuple(variable.shape) != tuple(value.shape):
        try:
            value = value.reshape(variable.shape)  # e.g. [h] bias -> [heads, head_dim]
        except ValueError:
            raise EncoderLoadError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(variable.shape)} (does config.json match the weights?)"
            ) from None
    variable.assign(value)


def port_dense(layer, weights, key: str, source: Path) -> None:
    """A torch Linear `[out, in]` (`key.weight`, `key.bias`) into a Dense/EinsumDense kernel."""
    kernel = tensor(weights, f"{key}.weight", source).T
    if tuple(layer.kernel.shape) != kernel.shape:
        kernel = np.reshape(kernel, layer.kernel.shape)
    assign(layer.kernel, kernel, f"{key}.weight", source)
    assign(layer.bias, tensor(weights, f"{key}.bias", source), f"{key}.bias", source)


def port_norm(layer, weights, key: str, source: Path) -> None:
    assign(layer.gamma, tensor(weights, f"{key}.weight", source), f"{key}.weight", source)
    assign(layer.beta, tensor(weights, f"{key}.bias", source), f"{key}.bias", source)


def port_transformer_block(block, weights, keys: dict[str, str], source: Path) -> None:
    """One keras-hub `TransformerEncoder` from HF tensors; `keys` maps each role (`query`,
    `key`, `value`, `attention_output`, `attention_norm`, `intermediate`, `output`,
    `output_norm`) to its HF name without `.weight`/`.bias`."""
    attention = attention_layer(block)
    port_dense(attention.query_dense, weights, keys["query"], source)
    port_dense(attention.key_dense, weights, keys["key"], source)
    port_dense(attention.value_dense, weights, keys["value"], source)
    port_dense(attention.output_dense, weights, keys["attention_output"], source)
    port_norm(attention_norm(block), weights, keys["attention_norm"], source)
    intermediate, output = feedforward_dense(block)
    port_dense(intermediate, weights, keys["intermediate"], source)
    port_dense(output, weights, keys["output"], source)
    port_norm(feedforward_norm(block), weights, keys["output_norm"], source)


def port_encoder_layers(backbone, weights: dict, source: Path) -> None:
    """HF BERT-style `encoder.layer.{i}.*` tensors into keras-hub's transformer layers."""
    for index in range(backbone.num_layers):
        keys = {role: f"encoder.layer.{index}.{name}" for role, name in BERT_BLOCK_KEYS.items()}
        port_transformer_block(
            backbone.get_layer(f"transformer_layer_{index}"), weights, keys, source
        )


def set_block_activation(blocks, function) -> None:
    """Swap the feed-forward activation of keras-hub `TransformerEncoder` blocks."""
    for block in blocks:
        set_feedforward_activation(block, function)


# ---- the inverse: keras-hub layers -> Hugging Face tensors (float32 numpy, PyTorch layout)


def to_numpy(value) -> np.ndarray:
    """A variable (or a LoRA-merged kernel) as a contiguous float32 numpy array."""
    return np.ascontiguousarray(keras.ops.convert_to_numpy(value), dtype=np.float32)


def dense_tensors(layer, key: str) -> dict[str, np.ndarray]:
    """The inverse of `port_dense`: a Dense/EinsumDense as a torch Linear's `key.weight`
    `[out, in]` and `key.bias` `[out]` (the bias's size tells an EinsumDense's out width)."""
    bias = to_numpy(layer.bias).reshape(-1)
    kernel = to_numpy(layer.kernel).reshape(-1, bias.size).T
    return {f"{key}.weight": np.ascontiguousarray(kernel), f"{key}.bias": bias}


def norm_tensors(layer, key: str) -> dict[str, np.ndarray]:
    """The inverse of `port_norm`."""
    return {f"{key}.weight": to_numpy(layer.gamma), f"{key}.bias": to_numpy(layer.beta)}


def transformer_block_tensors(block, keys: dict[str, str]) -> dict[str, np.ndarray]:
    """The inverse of `port_transformer_block`, with the same `keys` (role -> HF name)."""
    attention = attention_layer(block)
    intermediate, output = feedforward_dense(block)
    return {
        **dense_tensors(attention.query_dense, keys["query"]),
        **dense_tensors(attention.key_dense, keys["key"]),
        **dense_tensors(attention.value_dense, keys["value"]),
        **dense_tensors(attention.output_dense, keys["attention_output"]),
        **norm_tensors(attention_norm(block), keys["attention_norm"]),
        **dense_tensors(intermediate, keys["intermediate"]),
        **dense_tensors(output, keys["output"]),
        **norm_tensors(feedforward_norm(block), keys["output_norm"]),
    }


def encoder_layer_tensors(backbone) -> dict[str, np.ndarray]:
    """The inverse of `port_encoder_layers`: every block as `encoder.layer.{i}.*`."""
    tensors = {}
    for index in range(backbone.num_layers):
        keys = {role: f"encoder.layer.{index}.{name}" for role, name in BERT_BLOCK_KEYS.items()}
        block = backbone.get_layer(f"transformer_layer_{index}")
        tensors.update(transformer_block_tensors(block, keys))
    return tensors


def json_file(value: dict[str, Any]) -> bytes:
    """A JSON file's bytes as Hugging Face writes its configs: indented, UTF-8."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
