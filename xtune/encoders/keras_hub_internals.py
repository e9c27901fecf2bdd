"""The one place xtune reaches into keras-hub and Keras internals, for keras-hub 0.32 only.

Every other module of `xtune/encoders/` calls these functions. Each says what upstream lacks;
a new keras-hub version may rename what they read, so importing this module with another
version is an error (setup.py pins `keras-hub>=0.32,<0.33`).
"""

from __future__ import annotations

from typing import Any

import keras
import keras_hub

SUPPORTED_KERAS_HUB = "0.32."


def check_keras_hub_version(version: str) -> None:
    """An `ImportError` naming `version` unless it is a keras-hub 0.32.x release."""
    if not version.startswith(SUPPORTED_KERAS_HUB):
        raise ImportError(
            f"xtune.encoders needs keras-hub 0.32.x (it reads private attributes of its "
            f"TransformerEncoder and BytePairTokenizer); keras-hub {version} is installed: "
            "`pip install 'keras-hub>=0.32,<0.33'`"
        )


check_keras_hub_version(keras_hub.__version__)


# keras-hub's `TransformerEncoder` builds its sublayers as private attributes and has no
# public accessor for them: porting weights, layer norms and activations needs them.
def attention_layer(block: keras.layers.Layer) -> keras.layers.Layer:
    """The block's `keras.layers.MultiHeadAttention` (`query_dense`, ..., `output_dense`)."""
    return block._self_attention_layer


def attention_norm(block: keras.layers.Layer) -> keras.layers.LayerNormalization:
    """The layer norm after the self-attention (post-LN) or before it (pre-LN)."""
    return block._self_attention_layer_norm


def feedforward_dense(block: keras.layers.Layer) -> tuple[keras.layers.Dense, keras.layers.Dense]:
    """The feed-forward network's (intermediate, output) `Dense` layers."""
    return block._feedforward_intermediate_dense, block._feedforward_output_dense


def feedforward_norm(block: keras.layers.Layer) -> keras.layers.LayerNormalization:
    """The layer norm after the feed-forward network (post-LN) or before it (pre-LN)."""
    return block._feedforward_layer_norm


def set_feedforward_activation(block: keras.layers.Layer, function: Any) -> None:
    """Swap the block's feed-forward activation, in its config and in the layer that applies it.

    keras-hub's BERT hard-codes tanh-approximate GELU and takes no activation argument;
    checkpoints trained with exact GELU (`hidden_act: gelu`) need it swapped after building.
    """
    block.activation = function
    feedforward_dense(block)[0].activation = function


# Keras 3 layers have no public list of their nested sublayers (only `Model.layers`, one
# level deep); LoRA matching walks every projection inside a block, in Keras' own order.
def nested_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer nested in `layer` (recursively, depth first), without `layer` itself."""
    return layer._flatten_layers(include_self=False)


# Keras 3 dropped `get_output_at(i)`: a layer called several times in a functional graph
# (ALBERT's shared blocks) exposes only its first call's output as `layer.output`.
def call_output(layer: keras.layers.Layer, call_index: int) -> Any:
    """The symbolic output of `layer`'s `call_index`-th call in the functional graph."""
    return layer._inbound_nodes[call_index].output_tensors[0]


# keras-hub's `BytePairTokenizer` has no public entry to its TensorFlow merge path with
# another pre-split; `roberta.WhitespaceExactBytePairTokenizer` reuses its tables and cache.
def initialize_bpe_tables(tokenizer: keras_hub.tokenizers.BytePairTokenizer) -> None:
    """Build the tokenizer's TensorFlow tables and merge cache, once."""
    tokenizer._maybe_initialized_tf()


def merge_into_bpe_cache(tokenizer: keras_hub.tokenizers.BytePairTokenizer, words: Any) -> None:
    """BPE-merge `words` (pre-split byte strings) and add them to the tokenizer's cache."""
    tokenizer._bpe_merge_and_update_cache_tf(words)


# keras-hub's `MaskedLMHead` builds its transform and output bias as private attributes and
# has no accessor: initialising it from a checkpoint's head, and writing it back, need them.
def masked_lm_head_parts(head: keras.layers.Layer) -> tuple[Any, Any, Any]:
    """The head's (transform `Dense`, its `LayerNormalization`, output bias variable)."""
    return head._intermediate_dense, head._intermediate_layer_norm, head._bias
