"""Encoders: one adapter per backbone family (`FAMILIES`), loaders found by name (`ENCODERS`)."""

from xtune.encoders import bert, sources  # noqa: F401  (register the BERT family and the loaders)
from xtune.encoders.adapter import (
    FAMILIES,
    EncoderAdapter,
    EncoderLoadError,
    Packing,
    PieceTokenizer,
)
from xtune.encoders.encoder import (
    ENCODERS,
    LoadedEncoder,
    load_encoder,
    rebuild_encoder,
    write_encoder_files,
)

__all__ = [
    "ENCODERS",
    "FAMILIES",
    "EncoderAdapter",
    "EncoderLoadError",
    "LoadedEncoder",
    "Packing",
    "PieceTokenizer",
    "load_encoder",
    "rebuild_encoder",
    "write_encoder_files",
]

# Family modules register themselves in FAMILIES (the `hf` loader dispatches on them).
from xtune.encoders import (  # noqa: E402, F401
    albert,
    distilbert,
    multilingual_e5,
    roberta,
    xlm_roberta,
)
