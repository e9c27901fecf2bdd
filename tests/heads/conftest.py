"""Fixtures for the head tests: a tiny random encoder, padded batches, synthetic features."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from xtune.encoders import LoadedEncoder, load_encoder

TINY_VOCAB = Path(__file__).parent.parent / "fixtures" / "vocab_zh_small.txt"
NUM_LABELS = 5
HIDDEN_DIM = 16
NUM_LAYERS = 2
# Real tokens per row of the padded batches: a full row, a short one, a [CLS]-only one.
ROW_LENGTHS = (9, 4, 1)


def tiny_encoder() -> LoadedEncoder:
    return load_encoder(
        {
            "name": "random",
            "vocabulary": str(TINY_VOCAB),
            "num_layers": NUM_LAYERS,
            "num_heads": 2,
            "hidden_dim": HIDDEN_DIM,
            "intermediate_dim": 32,
            "max_sequence_length": 32,
        }
    )


@pytest.fixture(scope="module")
def encoder() -> LoadedEncoder:
    keras.utils.set_random_seed(0)
    return tiny_encoder()


def padded_batch(
    lengths: tuple[int, ...] = ROW_LENGTHS, extra_padding: int = 0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Model inputs whose padded positions hold arbitrary token and segment ids.

    The real tokens depend only on `lengths`; `seed` only changes what sits under mask 0,
    and `extra_padding` appends that many more padded positions.
    """
    real = np.random.default_rng(1234)
    noise = np.random.default_rng(seed)
    width = max(lengths) + 2 + extra_padding
    vocab_size = sum(1 for _ in TINY_VOCAB.open(encoding="utf-8"))
    token_ids = noise.integers(0, vocab_size, size=(len(lengths), width)).astype("int32")
    segment_ids = noise.integers(0, 2, size=(len(lengths), width)).astype("int32")
    padding_mask = np.zeros((len(lengths), width), "int32")
    for row, length in enumerate(lengths):
        token_ids[row, :length] = real.integers(5, vocab_size, size=length)
        token_ids[row, 0] = 2  # [CLS]
        segment_ids[row, :length] = 0
        padding_mask[row, :length] = 1
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}


def multi_hot_labels(rows: int, seed: int = 0) -> np.ndarray:
    labels = np.random.default_rng(seed).random((rows, NUM_LABELS)) < 0.3
    labels[:, 0] = True  # every row has at least one label
    return labels.astype("float32")


def synthetic_features(
    lengths: tuple[int, ...] = ROW_LENGTHS,
    extra_padding: int = 0,
    seed: int = 0,
    num_layers: int = NUM_LAYERS,
    dtype: str = "float32",
) -> dict:
    """An encoder features dict whose padded positions hold large random states.

    Real positions are the same for every `seed` and `extra_padding`; padded ones are drawn
    from `seed` with values up to +-1e4, so any head that lets padding in shows it.
    """
    real = np.random.default_rng(99)
    noise = np.random.default_rng(seed)
    batch, width = len(lengths), max(lengths) + 2 + extra_padding
    mask = np.zeros((batch, width), "int32")
    for row, length in enumerate(lengths):
        mask[row, :length] = 1

    def layer_states() -> np.ndarray:
        states = noise.uniform(-1e4, 1e4, size=(batch, width, HIDDEN_DIM))
        clean = real.normal(size=(batch, max(lengths), HIDDEN_DIM))
        for row, length in enumerate(lengths):
            states[row, :length] = clean[row, :length]
        return states

    hidden_states = [layer_states() for _ in range(num_layers)]
    pooled = np.tanh(real.normal(size=(batch, HIDDEN_DIM)))
    as_tensor = lambda array: keras.ops.convert_to_tensor(array.astype("float32"), dtype)  # noqa: E731
    return {
        "sequence_output": as_tensor(hidden_states[-1]),
        "pooled_output": as_tensor(pooled),
        "hidden_states": [as_tensor(states) for states in hidden_states],
        "padding_mask": keras.ops.convert_to_tensor(mask),
    }


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")
