"""Vocabulary trimming: keep only the word-embedding rows a corpus uses.

A multilingual vocabulary is mostly rows a given corpus never touches: multilingual-e5-small's
word embedding has 250,037 rows (96M of its 118M parameters), a Chinese appeal corpus uses a
few thousand. With AdamW every step updates every row (and keeps two moments for each), so
the dense update of rows no input reaches costs time and memory for nothing.

`trim_encoder(encoder, kept_ids)` rebuilds the encoder with a word embedding of only the kept
rows (in id order) and wraps its tokenizer in a `TrimmedTokenizer` that maps the original ids
onto the kept rows; pieces outside the kept set become the unknown token. On any text whose
pieces are all kept, the trimmed model computes exactly what the full model computes (same
rows, same weights); `xtune train` keeps every piece of every split (train, dev, test), so
trimming changes nothing on the data, only on new text with pieces the corpus lacked.

The run folder and the SavedModel keep the trimmed tokenizer (the kept ids are a file next to
the tokenizer's own), so served ids equal training ids.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from xtune.encoders.adapter import EncoderAdapter, PieceTokenizer, WordPieces

KEPT_IDS_FILE = "kept_token_ids.npy"


class TrimmedTokenizer(PieceTokenizer, tf.Module):
    """An inner tokenizer whose ids are mapped onto the kept rows (unknown pieces -> `<unk>`).

    A `tf.Module`, so a SavedModel that holds it tracks the inner tokenizer's resources.
    """

    def __init__(self, inner: PieceTokenizer, kept_ids: Any):
        tf.Module.__init__(self, name="trimmed_tokenizer")
        kept = np.unique(np.asarray(kept_ids, dtype=np.int64))
        specials = [inner.cls_id, inner.sep_id, inner.pad_id, inner.unk_id]
        kept = np.union1d(kept, specials)
        if kept[0] < 0 or kept[-1] >= inner.vocabulary_size:
            raise ValueError(
                f"kept token ids must lie in [0, {inner.vocabulary_size}); "
                f"got {kept[0]}..{kept[-1]}"
            )
        self.inner = inner
        self.kept_ids = kept
        id_map = np.full(inner.vocabulary_size, -1, dtype=np.int32)
        id_map[kept] = np.arange(len(kept), dtype=np.int32)
        self.cls_id, self.sep_id = int(id_map[inner.cls_id]), int(id_map[inner.sep_id])
        self.pad_id, self.unk_id = int(id_map[inner.pad_id]), int(id_map[inner.unk_id])
        kept_mask = inner.mask_id is not None and id_map[inner.mask_id] >= 0
        self.mask_id = int(id_map[inner.mask_id]) if kept_mask else None
        id_map[id_map < 0] = self.unk_id
        self.id_map = id_map

    @property
    def vocabulary_size(self) -> int:
        return len(self.kept_ids)

    def map_ids(self, ids: Any) -> Any:
        """Original ids (numpy or tensor) -> trimmed ids."""
        if isinstance(ids, np.ndarray):
            return self.id_map[ids]
        return tf.gather(tf.constant(self.id_map), ids)

    def tokenize(self, texts: Any) -> tf.RaggedTensor:
        ids = self.inner.tokenize(texts)
        if isinstance(ids, list):  # keras-hub tokenizers answer lists when run eagerly
            ids = tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1)
        return tf.ragged.map_flat_values(self.map_ids, ids)

    def settings(self) -> dict[str, Any]:
        return {**self.inner.settings(), "trimmed_vocabulary_size": self.vocabulary_size}

    def word_pieces(self) -> WordPieces:
        inner = self.inner.word_pieces()
        texts = [inner.texts[i] for i in self.kept_ids]
        return WordPieces(texts, inner.starts_word[self.kept_ids])

    def save(self, folder: Path) -> dict[str, Any]:
        inner_class = type(self.inner)
        record = {
            "kind": "trimmed",
            "kept_ids_file": KEPT_IDS_FILE,
            "inner_class": f"{inner_class.__module__}.{inner_class.__qualname__}",
            "inner": self.inner.save(Path(folder)),
        }
        np.save(Path(folder) / KEPT_IDS_FILE, self.kept_ids.astype(np.int32))
        return record

    @classmethod
    def load(cls, folder: Path, record: dict[str, Any]) -> TrimmedTokenizer:
        from xtune.encoders.encoder import tokenizer_class

        inner = tokenizer_class(record["inner_class"]).load(Path(folder), record["inner"])
        kept = np.load(Path(folder) / record.get("kept_ids_file", KEPT_IDS_FILE))
        return cls(inner, kept)


def trim_encoder(encoder: EncoderAdapter, kept_ids: Any) -> EncoderAdapter:
    """The same encoder with only the `kept_ids` rows of its word embedding (+ the special
    tokens); every other weight is copied unchanged."""
    tokenizer = TrimmedTokenizer(encoder.tokenizer, kept_ids)
    record = copy.deepcopy(encoder.record())
    record["backbone_config"]["vocabulary_size"] = tokenizer.vocabulary_size
    trimmed = type(encoder).rebuild(record, tokenizer)
    trimmed.checkpoint_folder = encoder.checkpoint_folder
    full_embedding = encoder.word_embeddings
    # Same family, same config: the same variables in the same order.
    for source, target in zip(encoder.backbone.weights, trimmed.backbone.weights, strict=True):
        value = source.numpy()
        if source is full_embedding:
            value = value[tokenizer.kept_ids]
        target.assign(value)
    return trimmed


def full_vocabulary_rows(trimmed_rows: Any, kept_ids: Any, full_rows: Any) -> np.ndarray:
    """The inverse of trimming for a tensor with one row per token id (the word embedding, a
    masked-LM head's bias or decoder): a copy of the original encoder's `full_rows` whose
    `kept_ids` rows are `trimmed_rows`. Rows that were not kept keep their original values.

    >>> full_vocabulary_rows(np.array([7.0, 9.0]), [0, 2], np.zeros(4)).tolist()
    [7.0, 0.0, 9.0, 0.0]
    """
    trimmed_rows, full_rows = np.asarray(trimmed_rows), np.asarray(full_rows)
    kept_ids = np.asarray(kept_ids, dtype=np.int64)
    if trimmed_rows.shape[0] != len(kept_ids) or trimmed_rows.shape[1:] != full_rows.shape[1:]:
        raise ValueError(
            f"trimmed rows of shape {trimmed_rows.shape} do not fit {len(kept_ids)} kept ids "
            f"of a full tensor of shape {full_rows.shape}"
        )
    if len(kept_ids) and not 0 <= kept_ids.min() <= kept_ids.max() < full_rows.shape[0]:
        raise ValueError(
            f"kept token ids {kept_ids.min()}..{kept_ids.max()} do not index the full tensor's "
            f"{full_rows.shape[0]} rows"
        )
    rows = full_rows.copy()
    rows[kept_ids] = trimmed_rows
    return rows


def used_token_ids(token_id_arrays: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct ids in some token-id arrays (the corpus's pieces)."""
    return np.unique(np.concatenate([np.asarray(a).ravel() for a in token_id_arrays]))
