"""Prompt tuning and prefix tuning injected into a keras-hub encoder's graph, through public APIs.

`tuned_features_model` rebuilds a backbone's forward pass from its own (frozen) layers:

    embeddings (the backbone's sub-graph up to the first transformer block's input:
                token + position (+ segment) embeddings, LayerNorm, dropout)
    -> soft prompt: P learned vectors prepended to the embedded sequence (Lester et al.,
       2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"). They enter AFTER
       the position embeddings and the embedding LayerNorm, so the real tokens keep their
       positions 0..t-1 and the longest input is unchanged; the prompt has no position.
    -> every transformer block, its attention mask widened to `[prompt: 1] + padding_mask`
       (prompt positions attended, padding not); with prefix tuning each block's attention
       also sees P learned key and value vectors per head prepended after the projections
       (Li & Liang, 2021, "Prefix-Tuning"; Liu et al., 2022, "P-Tuning v2"), always attended;
       they start as the frozen model's keys and values of P vocabulary tokens (Li & Liang's
       real-word initialisation), the soft prompt as those tokens' embeddings (Lester et al.).
    -> the prompt positions dropped from every block's output, so `sequence_output`,
       `hidden_states` and the pooler (first real token) line up with the padding mask.

With both lengths 0 the rebuilt graph computes what the backbone computes (tests check it
to float32 round-off). A prefixed block re-runs keras-hub's `TransformerEncoder.call`
(post- or pre-LN) with the block's own sublayers; its attention is Keras's
`MultiHeadAttention` arithmetic on the public `query_dense`/`key_dense`/`value_dense`/
`output_dense` projections, so LoRA on those projections still applies.

The new weights are created in the name scope of the layer whose parameter group they join
(the word embedding's for the prompt, block i's for its prefix): `parameter_group` and
layer-wise learning rates need no change in any family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from xtune.encoders.keras_hub_internals import (
    attention_layer,
    attention_norm,
    feedforward_dense,
    feedforward_norm,
)

# Names of the variables this module adds (freezing finds them by name).
PROMPT_VARIABLE = "soft_prompt"
PREFIX_VARIABLES = ("prefix_keys", "prefix_values")
TUNING_VARIABLE_NAMES = (PROMPT_VARIABLE, *PREFIX_VARIABLES)


@dataclass(frozen=True)
class EncoderTuning:
    """What the rebuilt graph adds: a soft prompt of `prompt_length` vectors, and prefixes of
    `prefix_length` key/value vectors in every attention layer. None: not there; 0: there,
    empty (the graph of the method, which must then compute what the backbone does)."""

    prompt_length: int | None = None
    prefix_length: int | None = None


def tune_encoder(encoder: Any, finetune: Any) -> None:
    """Give `encoder` (an adapter) the prompt / prefix of a `finetune` config before its
    graph is built (training, and loading a run folder); nothing when neither is set. A
    family without support is a `ValueError` naming it."""
    tuning = EncoderTuning(finetune.prompt_length, finetune.prefix_length)
    if tuning != EncoderTuning():
        encoder.set_tuning(tuning)


@keras.saving.register_keras_serializable(package="xtune")
class SoftPrompt(keras.layers.Layer):
    """Prepends `length` learned vectors to a `[b, t, h]` sequence and ones to its mask."""

    def __init__(self, length: int, initial_value: np.ndarray | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.length = int(length)
        self.initial_value = initial_value

    def build(self, input_shape: Any) -> None:
        hidden = int(input_shape[0][-1])
        initial = self.initial_value
        initializer = (
            keras.initializers.RandomNormal(stddev=1.0)
            if initial is None
            else keras.initializers.Constant(np.asarray(initial, "float32"))
        )
        self.prompt = self.add_weight(
            shape=(self.length, hidden), initializer=initializer, name=PROMPT_VARIABLE
        )

    def call(self, inputs: Any) -> tuple[Any, Any]:
        sequence, padding_mask = inputs
        batch = keras.ops.shape(sequence)[0]
        prompt = keras.ops.cast(self.prompt, sequence.dtype)
        prompt = keras.ops.broadcast_to(prompt[None], (batch, self.length, prompt.shape[-1]))
        ones = keras.ops.ones((batch, self.length), dtype=padding_mask.dtype)
        return (
            keras.ops.concatenate([prompt, sequence], axis=1),
            keras.ops.concatenate([ones, padding_mask], axis=1),
        )

    def compute_output_spec(self, inputs: Any) -> tuple[Any, Any]:
        sequence, padding_mask = inputs
        length = None if sequence.shape[1] is None else sequence.shape[1] + self.length
        return (
            keras.KerasTensor((sequence.shape[0], length, sequence.shape[2]), sequence.dtype),
            keras.KerasTensor((padding_mask.shape[0], length), padding_mask.dtype),
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


@keras.saving.register_keras_serializable(package="xtune")
class PrefixedTransformerBlock(keras.layers.Layer):
    """A keras-hub `TransformerEncoder` block whose self-attention also attends to `length`
    learned key and value vectors per head (see the module docstring); the block's own
    weights are reused, not copied."""

    def __init__(self, block: keras.layers.Layer, length: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.block = block
        self.length = int(length)
        attention = attention_layer(block)
        self.num_heads, self.head_dim = int(attention.num_heads), int(attention.key_dim)
        self.attention_dropout = keras.layers.Dropout(attention.dropout)
        self.output_dropout = keras.layers.Dropout(block.dropout)
        self.feedforward_dropout = keras.layers.Dropout(block.dropout)

    def build_prefix(self, scope: str, initial: tuple[np.ndarray, np.ndarray]) -> None:
        """The prefix weights, in `scope` (block i's name: parameter group `layer_i`),
        starting from `initial` (keys, values), each `[length, heads, dim]`."""
        with keras.name_scope(scope):
            self.prefix_keys, self.prefix_values = (
                self.add_weight(
                    shape=value.shape,
                    initializer=keras.initializers.Constant(value),
                    name=name,
                )
                for name, value in zip(PREFIX_VARIABLES, initial, strict=True)
            )

    def projected(self, x: Any) -> tuple[Any, Any]:
        """The block's own key and value projections of its input `x` `[b, t, h]`."""
        attention = attention_layer(self.block)
        if self.block.normalize_first:
            x = attention_norm(self.block)(x)
        return attention.key_dense(x), attention.value_dense(x)

    def build(self, input_shape: Any) -> None:
        self.built = True  # the block is built; the prefix weights come from `build_prefix`

    def call(self, inputs: Any, padding_mask: Any, training: bool | None = None) -> Any:
        block = self.block
        x = residual = inputs
        if block.normalize_first:
            x = attention_norm(block)(x)
        x = self.prefixed_attention(x, padding_mask, training)
        x = self.output_dropout(x, training=training) + residual
        if not block.normalize_first:
            x = attention_norm(block)(x)
        residual = x
        if block.normalize_first:
            x = feedforward_norm(block)(x)
        intermediate, output = feedforward_dense(block)
        x = self.feedforward_dropout(output(intermediate(x)), training=training) + residual
        if not block.normalize_first:
            x = feedforward_norm(block)(x)
        return x

    def prefixed_attention(self, x: Any, padding_mask: Any, training: bool | None) -> Any:
        """Keras `MultiHeadAttention`'s arithmetic with the prefix prepended to keys/values."""
        attention = attention_layer(self.block)
        query = attention.query_dense(x)  # [b, t, heads, dim]
        key, value = attention.key_dense(x), attention.value_dense(x)
        batch = keras.ops.shape(x)[0]
        shape = (batch, self.length, self.num_heads, self.head_dim)
        prefix_keys = keras.ops.broadcast_to(
            keras.ops.cast(self.prefix_keys, key.dtype)[None], shape
        )
        prefix_values = keras.ops.broadcast_to(
            keras.ops.cast(self.prefix_values, value.dtype)[None], shape
        )
        key = keras.ops.concatenate([prefix_keys, key], axis=1)  # [b, P + t, heads, dim]
        value = keras.ops.concatenate([prefix_values, value], axis=1)
        query = keras.ops.multiply(
            query, keras.ops.cast(1.0 / math.sqrt(self.head_dim), query.dtype)
        )
        scores = keras.ops.einsum("aecd,abcd->acbe", key, query)  # [b, heads, t, P + t]
        visible = keras.ops.concatenate(
            [keras.ops.ones((batch, self.length), "bool"), keras.ops.cast(padding_mask, "bool")],
            axis=1,
        )[:, None, None, :]
        scores = keras.ops.cast(scores, "float32")
        scores = keras.ops.where(visible, scores, keras.ops.full_like(scores, -1e9))
        probabilities = keras.ops.cast(keras.ops.softmax(scores, axis=-1), value.dtype)
        probabilities = self.attention_dropout(probabilities, training=training)
        context = keras.ops.einsum("acbe,aecd->abcd", probabilities, value)  # [b, t, heads, dim]
        return attention.output_dense(context)

    def compute_output_spec(self, inputs: Any, padding_mask: Any = None, training: Any = None):
        return keras.KerasTensor(inputs.shape, self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


def embedding_model(backbone: keras.Model, first_block: keras.layers.Layer) -> keras.Model:
    """The backbone's graph up to its first transformer block's input (the embedded
    sequence): the backbone's own embedding layers, nothing new."""
    embedded = keras.tree.flatten(first_block.input)[0]
    return keras.Model(backbone.input, embedded, name="embeddings")


def embedded_vocabulary_sample(
    embeddings: keras.Model, vocabulary_size: int, length: int, special_ids: int = 5
) -> Any:
    """The embedded sequence `[1, length, h]` (positions 0..length-1) of `length` token ids
    drawn (seeded by `length`) from the vocabulary past its first special ids."""
    rng = np.random.default_rng(length)
    low = min(special_ids, vocabulary_size - 1)
    ids = rng.integers(low, vocabulary_size, size=(1, length)).astype("int32")
    inputs = {name: np.zeros_like(ids) for name in embeddings.input}  # segment 0
    inputs.update(token_ids=ids, padding_mask=np.ones_like(ids))
    return embeddings(inputs, training=False)


def as_numpy(tensor: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(tensor, "float32")))


def prompt_initial_value(embedded: Any) -> np.ndarray:
    """Lester et al.'s vocabulary initialisation: the embedded vocabulary sample."""
    return as_numpy(embedded)[0]


def prefix_initial_values(
    embedded: Any, blocks: list[keras.layers.Layer], prefixed: list[PrefixedTransformerBlock]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Li & Liang's initialisation with real words' activations (their section 7.2: it helps
    most with little data): block i's prefix starts as the frozen model's own keys and values
    of the vocabulary sample at block i, so at the start the prefix is P real tokens."""
    x, mask = embedded, keras.ops.ones(keras.ops.shape(embedded)[:2], "int32")
    values = []
    for block, wrapper in zip(blocks, prefixed, strict=True):
        keys, projected_values = wrapper.projected(x)
        values.append((as_numpy(keys)[0], as_numpy(projected_values)[0]))
        x = block(x, padding_mask=mask, training=False)
    return values


def prefixed_blocks(
    embeddings: keras.Model, blocks: list[keras.layers.Layer], vocabulary_size: int, length: int
) -> list[PrefixedTransformerBlock]:
    """Each block wrapped with a prefix of `length`, initialised by `prefix_initial_values`."""
    prefixed = [
        PrefixedTransformerBlock(block, length, name=f"prefixed_{block.name}") for block in blocks
    ]
    if length:
        embedded = embedded_vocabulary_sample(embeddings, vocabulary_size, length)
        initial = prefix_initial_values(embedded, blocks, prefixed)
    else:
        empty = np.zeros((0, prefixed[0].num_heads, prefixed[0].head_dim), "float32")
        initial = [(empty, empty)] * len(blocks)
    for block, wrapper, values in zip(blocks, prefixed, initial, strict=True):
        wrapper.build_prefix(block.name, values)
    return prefixed


def tuned_features_model(
    backbone: keras.Model,
    blocks: list[keras.layers.Layer],
    word_embeddings: keras.Variable,
    pooler: keras.layers.Layer | None,
    tuning: EncoderTuning,
    name: str,
) -> keras.Model:
    """The backbone's forward pass with `tuning`'s prompt and prefixes (module docstring):
    the same inputs as `backbone`, outputs `sequence_output`, `hidden_states` and, with a
    `pooler` (a Dense on the first real token), `pooled_output`."""
    embeddings = embedding_model(backbone, blocks[0])
    inputs = {
        key: keras.Input(shape=(None,), dtype=tensor.dtype, name=key)
        for key, tensor in backbone.input.items()
    }
    x, mask = embeddings(inputs), inputs["padding_mask"]
    length = tuning.prompt_length or 0
    vocabulary_size = int(word_embeddings.shape[0])
    if tuning.prompt_length is not None:
        initial = None
        if length:
            sample = embedded_vocabulary_sample(embeddings, vocabulary_size, length)
            initial = prompt_initial_value(sample)
        prompt = SoftPrompt(length, initial, name="soft_prompt")
        with keras.name_scope(word_embeddings.path.split("/")[0]):
            prompt.build((x.shape, mask.shape))
        x, mask = prompt((x, mask))
    layers = list(blocks)
    if tuning.prefix_length is not None:
        layers = prefixed_blocks(embeddings, blocks, vocabulary_size, tuning.prefix_length)
    hidden_states = []
    for layer in layers:
        x = layer(x, padding_mask=mask)
        hidden_states.append(x[:, length:, :])
    outputs = {"sequence_output": hidden_states[-1], "hidden_states": hidden_states}
    if pooler is not None:
        outputs["pooled_output"] = pooler(hidden_states[-1][:, 0, :])
    return keras.Model(inputs, outputs, name=name)
