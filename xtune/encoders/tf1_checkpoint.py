"""Convert Google's TF1 BERT checkpoint folders to and from keras-hub BertBackbones."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from xtune.encoders.keras_hub_internals import (
    attention_layer,
    attention_norm,
    feedforward_dense,
    feedforward_norm,
)

CONFIG_FILENAME = "bert_config.json"
CHECKPOINT_NAME = "bert_model.ckpt"
VOCABULARY_FILENAME = "vocab.txt"

# bert_config.json keys that BertBackbone cannot be built without.
REQUIRED_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
# Google's default when a config leaves dropout out.
DEFAULT_HIDDEN_DROPOUT = 0.1
# Errors list this many problems and summarize the rest, so a wrong model stays readable.
MAX_LISTED_PROBLEMS = 10


def read_bert_config(folder: str | Path) -> dict:
    """Reads `folder/bert_config.json`, checking that every key BertBackbone needs is present."""
    path = Path(folder) / CONFIG_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a TF1 BERT folder must hold {CONFIG_FILENAME} "
            f"next to {CHECKPOINT_NAME}.index and {CHECKPOINT_NAME}.data-*"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    _check_required_keys(config, source=str(path))
    return config


def backbone_kwargs_from_bert_config(config: dict) -> dict:
    """Translates a bert_config.json dict into `keras_hub.models.BertBackbone` kwargs."""
    _check_required_keys(config, source="BERT config")
    return {
        "vocabulary_size": config["vocab_size"],
        "num_layers": config["num_hidden_layers"],
        "num_heads": config["num_attention_heads"],
        "hidden_dim": config["hidden_size"],
        "intermediate_dim": config["intermediate_size"],
        "max_sequence_length": config["max_position_embeddings"],
        "num_segments": config["type_vocab_size"],
        "dropout": config.get("hidden_dropout_prob", DEFAULT_HIDDEN_DROPOUT),
    }


def load_tf1_weights(
    backbone: keras_hub.models.BertBackbone, checkpoint_prefix: str | Path
) -> None:
    """Copies every `bert/...` weight of a TF1 checkpoint into `backbone`.

    Other variables (the `cls/...` MLM head, Adam slots, a fine-tuned classifier) are ignored.
    All weights are checked before any is assigned, so a failed load leaves `backbone` as it was.
    """
    prefix = str(checkpoint_prefix)
    if not Path(prefix + ".index").is_file():
        raise FileNotFoundError(
            f"TF1 checkpoint {prefix} not found: expected {prefix}.index and {prefix}.data-*"
        )
    reader = tf.train.load_checkpoint(prefix)
    checkpoint_shapes = reader.get_variable_to_shape_map()

    weight_map = _google_weight_map(backbone)
    problems = []
    for name, (_, google_shape) in weight_map.items():
        if name not in checkpoint_shapes:
            problems.append(f"missing {name} (expected shape {google_shape})")
        elif tuple(checkpoint_shapes[name]) != google_shape:
            found = tuple(checkpoint_shapes[name])
            problems.append(f"{name} has shape {found}, expected {google_shape}")
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        if len(problems) > MAX_LISTED_PROBLEMS:
            listed.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        raise ValueError(
            f"TF1 checkpoint {prefix} does not match the BertBackbone "
            f"({backbone.num_layers} layers, hidden {backbone.hidden_dim}, "
            f"vocabulary {backbone.vocabulary_size}, "
            f"max_sequence_length {backbone.max_sequence_length}):\n  " + "\n  ".join(listed)
        )

    for name, (variable, _) in weight_map.items():
        variable.assign(np.reshape(reader.get_tensor(name), variable.shape))


def load_tf1_backbone(folder: str | Path) -> keras_hub.models.BertBackbone:
    """Builds a BertBackbone from `folder/bert_config.json`, filled from the folder's checkpoint."""
    config = read_bert_config(folder)
    backbone = keras_hub.models.BertBackbone(**backbone_kwargs_from_bert_config(config))
    load_tf1_weights(backbone, find_checkpoint_prefix(folder))
    return backbone


def find_checkpoint_prefix(folder: str | Path) -> Path:
    """Returns `folder/bert_model.ckpt`, or the folder's only `*.index` checkpoint otherwise."""
    folder = Path(folder)
    default = folder / CHECKPOINT_NAME
    if Path(f"{default}.index").is_file():
        return default
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    found = ", ".join(index.name for index in indexes) or "none"
    raise FileNotFoundError(
        f"no TF1 checkpoint to load in {folder}: expected {CHECKPOINT_NAME}.index "
        f"or exactly one *.index file (found: {found})"
    )


def write_tf1_checkpoint(
    backbone: keras_hub.models.BertBackbone,
    folder: str | Path,
    vocabulary: list[str] | None = None,
) -> None:
    """Writes `backbone` as Google's TF1 layout: bert_config.json, bert_model.ckpt.* and vocab.txt.

    The checkpoint holds exactly Google's `bert/...` variable names and shapes in float32,
    so `tf.train.load_checkpoint` and TF1 tooling read it like an original BERT release.
    """
    if vocabulary is not None and len(vocabulary) != backbone.vocabulary_size:
        raise ValueError(
            f"vocabulary has {len(vocabulary)} tokens but the backbone's vocabulary_size is "
            f"{backbone.vocabulary_size}: vocab.txt must list one token per embedding row"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    (folder / CONFIG_FILENAME).write_text(
        json.dumps(_bert_config_from_backbone(backbone), indent=2) + "\n", encoding="utf-8"
    )
    weights = {
        name: np.reshape(keras.ops.convert_to_numpy(variable), google_shape).astype(np.float32)
        for name, (variable, google_shape) in _google_weight_map(backbone).items()
    }
    names = sorted(weights)
    tf.raw_ops.SaveV2(
        prefix=str(folder / CHECKPOINT_NAME),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[weights[name] for name in names],
    )
    if vocabulary is not None:
        (folder / VOCABULARY_FILENAME).write_text(
            "".join(f"{token}\n" for token in vocabulary), encoding="utf-8"
        )


def _check_required_keys(config: dict, source: str) -> None:
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(
            f"{source} lacks required key(s) {', '.join(missing)}; "
            f"a BERT config needs all of: {', '.join(REQUIRED_CONFIG_KEYS)}"
        )
    not_integers = [
        key
        for key in REQUIRED_CONFIG_KEYS
        if not isinstance(config[key], int) or isinstance(config[key], bool)
    ]
    if not_integers:
        values = ", ".join(f"{key}={config[key]!r}" for key in not_integers)
        raise ValueError(f"{source}: expected integers for {values}")


def _bert_config_from_backbone(backbone: keras_hub.models.BertBackbone) -> dict:
    return {
        "attention_probs_dropout_prob": backbone.dropout,
        # Google's "gelu" is the tanh approximation, as in keras-hub's BertBackbone.
        "hidden_act": "gelu",
        "hidden_dropout_prob": backbone.dropout,
        "hidden_size": backbone.hidden_dim,
        "initializer_range": 0.02,
        "intermediate_size": backbone.intermediate_dim,
        "max_position_embeddings": backbone.max_sequence_length,
        "num_attention_heads": backbone.num_heads,
        "num_hidden_layers": backbone.num_layers,
        "type_vocab_size": backbone.num_segments,
        "vocab_size": backbone.vocabulary_size,
    }


def _google_weight_map(
    backbone: keras_hub.models.BertBackbone,
) -> dict[str, tuple[keras.Variable, tuple[int, ...]]]:
    """Maps each Google variable name to its keras-hub variable and its shape in the checkpoint.

    TF1 and Keras both store dense kernels as [inputs, outputs], so every conversion is a
    reshape: keras-hub splits attention projections by head ([hidden, heads, head_dim] for
    query/key/value, [heads, head_dim, hidden] for the output), Google keeps them flat.
    """

    def same(variable: keras.Variable) -> tuple[keras.Variable, tuple[int, ...]]:
        return variable, tuple(variable.shape)

    def flat_heads_in(variable: keras.Variable) -> tuple[keras.Variable, tuple[int, ...]]:
        # query/key/value kernel [hidden, heads, head_dim] or bias [heads, head_dim].
        shape = tuple(variable.shape)
        return variable, (*shape[:-2], shape[-2] * shape[-1])

    def flat_heads_out(variable: keras.Variable) -> tuple[keras.Variable, tuple[int, ...]]:
        # attention output kernel [heads, head_dim, hidden].
        heads, head_dim, hidden = variable.shape
        return variable, (heads * head_dim, hidden)

    def layer_norm(
        prefix: str, layer: keras.layers.LayerNormalization
    ) -> dict[str, tuple[keras.Variable, tuple[int, ...]]]:
        return {
            f"{prefix}/LayerNorm/gamma": same(layer.gamma),
            f"{prefix}/LayerNorm/beta": same(layer.beta),
        }

    def dense(
        prefix: str, layer: keras.layers.Dense
    ) -> dict[str, tuple[keras.Variable, tuple[int, ...]]]:
        return {f"{prefix}/kernel": same(layer.kernel), f"{prefix}/bias": same(layer.bias)}

    weights = {
        "bert/embeddings/word_embeddings": same(backbone.get_layer("token_embedding").embeddings),
        "bert/embeddings/position_embeddings": same(
            backbone.get_layer("position_embedding").position_embeddings
        ),
        "bert/embeddings/token_type_embeddings": same(
            backbone.get_layer("segment_embedding").embeddings
        ),
        **layer_norm("bert/embeddings", backbone.get_layer("embeddings_layer_norm")),
    }
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attention = attention_layer(block)
        prefix = f"bert/encoder/layer_{i}"
        for projection in ("query", "key", "value"):
            dense_layer = getattr(attention, f"{projection}_dense")
            weights[f"{prefix}/attention/self/{projection}/kernel"] = flat_heads_in(
                dense_layer.kernel
            )
            weights[f"{prefix}/attention/self/{projection}/bias"] = flat_heads_in(dense_layer.bias)
        weights[f"{prefix}/attention/output/dense/kernel"] = flat_heads_out(
            attention.output_dense.kernel
        )
        weights[f"{prefix}/attention/output/dense/bias"] = same(attention.output_dense.bias)
        intermediate, output = feedforward_dense(block)
        weights.update(layer_norm(f"{prefix}/attention/output", attention_norm(block)))
        weights.update(dense(f"{prefix}/intermediate/dense", intermediate))
        weights.update(dense(f"{prefix}/output/dense", output))
        weights.update(layer_norm(f"{prefix}/output", feedforward_norm(block)))
    weights.update(dense("bert/pooler/dense", backbone.get_layer("pooled_dense")))
    return weights
