"""Heads: the encoder's features dict -> one vector per example, picked by name from YAML.

Importing the package loads no Keras, so `xtune.heads.checks` checks a head's arguments
for the config on its own. The heads, and `HEADS` filled with them, load on first use of a
name below (PEP 562 `__getattr__`, as `xtune` loads its API).
"""

from typing import Any

from xtune.lazy_exports import bind_exports

__all__ = [
    "HEADS",
    "AttentionPoolingHead",
    "CosineScore",
    "Head",
    "MultiLayerPoolingHead",
    "PairFeatures",
    "PoolingHead",
    "RecurrentHead",
    "TextCNNHead",
    "get_head",
    "masked_mean_pool",
    "masked_pool",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # These modules register their heads into HEADS on import (and `pair` its Keras layers).
    from xtune.heads import (  # noqa: F401
        attention,
        base,
        multi_layer,
        pair,
        pooling,
        recurrent,
        textcnn,
    )

    return bind_exports(globals(), __all__, name, locals().values())
