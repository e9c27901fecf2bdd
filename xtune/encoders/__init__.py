"""Encoders: one adapter per backbone family (`FAMILIES`), loaders found by name (`ENCODERS`).

Importing the package loads no TensorFlow, so `xtune.encoders.positions` reads an encoder's
limits for the config on its own. The adapters and loaders, and the registries filled with
them, load on first use of a name below (PEP 562 `__getattr__`, as `xtune` loads its API).
"""

from typing import Any

from xtune.lazy_exports import bind_exports

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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # `bert` and `sources` register the loaders in ENCODERS, the family modules themselves in
    # FAMILIES (the `hf` loader dispatches on them).
    from xtune.encoders import (  # noqa: F401
        adapter,
        albert,
        bert,
        distilbert,
        encoder,
        multilingual_e5,
        roberta,
        sources,
        xlm_roberta,
    )

    return bind_exports(globals(), __all__, name, (adapter, encoder))
