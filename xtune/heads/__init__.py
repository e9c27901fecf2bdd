"""Heads: the encoder's features dict -> one vector per example, picked by name from YAML."""

from xtune.heads import pooling  # noqa: F401  (registers the heads)
from xtune.heads.base import HEADS, Head, get_head

__all__ = ["HEADS", "Head", "get_head"]
