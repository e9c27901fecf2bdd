"""Encoders: a keras-hub backbone plus the tokenizer settings that go with it, found by name."""

from xtune.encoders import sources  # noqa: F401  (registers the encoder loaders)
from xtune.encoders.encoder import ENCODERS, LoadedEncoder, load_encoder, rebuild_encoder

__all__ = ["ENCODERS", "LoadedEncoder", "load_encoder", "rebuild_encoder"]
