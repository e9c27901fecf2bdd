"""Heads: the encoder's features dict -> one vector per example, picked by name from YAML."""

# These modules register their heads into HEADS on import (and `pair` its Keras layers, so a
# saved bi-encoder loads once `xtune.heads` is imported).
from xtune.heads import attention, multi_layer, pair, pooling, recurrent, textcnn  # noqa: F401
from xtune.heads.attention import AttentionPoolingHead
from xtune.heads.base import HEADS, Head, get_head
from xtune.heads.multi_layer import MultiLayerPoolingHead
from xtune.heads.pair import CosineScore, PairFeatures, masked_mean_pool
from xtune.heads.pooling import PoolingHead, masked_pool
from xtune.heads.recurrent import RecurrentHead
from xtune.heads.textcnn import TextCNNHead

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
