"""Encoder loaders by name (`ENCODERS`), feed-forward activations, and the run-folder record.

Loaders (`xtune/encoders/sources.py`) return an `EncoderAdapter`; `write_encoder_files` and
`rebuild_encoder` store and rebuild one through its family (`FAMILIES`).
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

import keras

from xtune.encoders.adapter import FAMILIES, EncoderAdapter, EncoderLoadError, PieceTokenizer
from xtune.encoders.keras_hub_internals import set_feedforward_activation
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
# ... and back: the `hidden_act` a written Hugging Face folder names for each activation.
HF_HIDDEN_ACTS = {"gelu_exact": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}


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
        set_feedforward_activation(backbone.get_layer(f"transformer_layer_{i}"), function)


def family_of(name: str) -> type[EncoderAdapter]:
    """The adapter class of a family; an unknown one is an `EncoderLoadError` listing them."""
    if name not in FAMILIES:
        raise EncoderLoadError(
            f"unknown encoder family {name!r}; supported: {', '.join(FAMILIES.names())}"
        )
    return FAMILIES.get(name)


def write_encoder_files(encoder: EncoderAdapter, folder: Path) -> dict[str, Any]:
    """Write the tokenizer's files into `folder`; return what encoder.json stores to rebuild
    the encoder with `rebuild_encoder` (family, architecture, tokenizer class and record)."""
    tokenizer = type(encoder.tokenizer)
    return {
        "family": encoder.family,
        "encoder": encoder.record(),
        "tokenizer_class": f"{tokenizer.__module__}.{tokenizer.__qualname__}",
        "tokenizer": encoder.tokenizer.save(Path(folder)),
    }


def rebuild_encoder(stored: dict[str, Any], folder: Path) -> EncoderAdapter:
    """The architecture `write_encoder_files` recorded, tokenizer from `folder`; weights load
    separately. A record without `family` is an older run folder: BERT, with `lowercase` in
    the record and the vocabulary in vocab.txt."""
    if "family" not in stored:
        stored = {
            "family": "bert",
            "encoder": stored,
            "tokenizer_class": "xtune.encoders.bert.WordPieceTokenizer",
            "tokenizer": {"lowercase": stored["lowercase"]},
        }
    family = family_of(stored["family"])
    tokenizer = tokenizer_class(stored["tokenizer_class"]).load(Path(folder), stored["tokenizer"])
    return family.rebuild(stored["encoder"], tokenizer)


def fresh_tokenizer(tokenizer: PieceTokenizer) -> PieceTokenizer:
    """A new tokenizer from `tokenizer`'s saved files: new TensorFlow resources.

    `keras.backend.clear_session()` (the grid runs it between runs) clears the kernel cache,
    which frees the SentencePiece model resource a tokenizer created; a tokenizer kept across
    runs then fails with "Resource ... SentencepieceOp ... does not exist".
    """
    with tempfile.TemporaryDirectory() as folder:
        record = tokenizer.save(Path(folder))
        return type(tokenizer).load(Path(folder), record)


def tokenizer_class(path: str) -> type[PieceTokenizer]:
    """A `PieceTokenizer` class by its dotted path; only xtune's own encoder modules."""
    module_name, _, name = path.rpartition(".")
    cls = None
    if module_name.startswith("xtune.encoders."):
        cls = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(cls, type) and issubclass(cls, PieceTokenizer)):
        raise EncoderLoadError(f"encoder.json: tokenizer_class {path!r} is not an xtune tokenizer")
    return cls


def load_encoder(spec: Any) -> EncoderAdapter:
    """Load an encoder adapter from a `ComponentSpec` or a `{"name": ..., **kwargs}` dict."""
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    return ENCODERS.build(spec)


# Older name of the adapter type, kept for callers written before the family interface.
LoadedEncoder = EncoderAdapter
