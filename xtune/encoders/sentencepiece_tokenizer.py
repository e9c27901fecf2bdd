"""In-graph SentencePiece tokenization with Hugging Face's pre-normalisation and id conventions.

One class serves ALBERT (`spiece.model`: ids are SentencePiece ids, `[CLS]`/`[SEP]` pieces in
the model) and XLM-R-style vocabularies (fairseq ids: `<s>`=0, `<pad>`=1, `</s>`=2,
`<unk>`=3, every other SentencePiece id shifted by +1), including BERT-architecture models
with an XLM-R vocabulary (multilingual MiniLM / e5).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from xtune.encoders.adapter import PieceTokenizer, WordPieces

MODEL_FILE = "sentencepiece.model"
WORD_START = "▁"  # SentencePiece's mark of a piece that begins a word
MASK_TOKENS = ("<mask>", "[MASK]")  # XLM-R's and ALBERT's
# Unicode non-spacing marks: what Hugging Face's StripAccents drops after NFKD.
NONSPACING_MARKS = r"\p{Mn}"


class SentencePieceTokenizer(PieceTokenizer, tf.Module):
    """Raw text -> ids with a SentencePiece model proto, inside a TF graph.

    A `tf.Module`, so a SavedModel that holds it (as an attribute) tracks the SentencePiece
    resource its `tokenize` captures.

    Args:
        proto: the serialized SentencePiece `ModelProto` (a `.model` file's bytes). Its own
            normaliser (e.g. `nmt_nfkc` with the precompiled charsmap, whitespace collapsing,
            the dummy `▁` prefix) runs inside `tensorflow_text.SentencepieceTokenizer`.
        cls_id, sep_id, pad_id, unk_id: the ids packing and padding use, in output ids.
        id_offset: added to every SentencePiece id (1 for XLM-R's fairseq convention).
        id_map: SentencePiece id -> output id exceptions, applied instead of the offset
            (XLM-R: `{0: 3}`, SentencePiece's `<unk>` becomes fairseq's `<unk>`).
        vocabulary_size: rows of the word embedding; default SentencePiece size + offset +
            `appended_ids` (XLM-R adds `<mask>` at the end: pass the model's `vocab_size`).
        appended_ids: ids the model adds after the pieces (1 for fairseq's `<mask>`).
        lowercase: lower-case first (`tf.strings.lower`, Unicode), as HF's `Lowercase`.
        strip_accents: NFKD then drop non-spacing marks, as HF's `NFKD` + `StripAccents`.
        replace_quotes: ALBERT's "``" and "''" -> '"' replacements.
        special_tokens: literal special tokens -> id, matched in the raw text first (as
            Hugging Face's added tokens: `"a<s>b"` -> `▁a`, 0, `▁b`); the text between them
            is tokenized part by part, each with its dummy `▁` prefix.
    """

    def __init__(
        self,
        proto: bytes,
        cls_id: int,
        sep_id: int,
        pad_id: int,
        unk_id: int,
        id_offset: int = 0,
        id_map: dict[int, int] | None = None,
        vocabulary_size: int | None = None,
        appended_ids: int = 0,
        lowercase: bool = False,
        strip_accents: bool = False,
        replace_quotes: bool = False,
        special_tokens: dict[str, int] | None = None,
    ):
        tf.Module.__init__(self, name="sentencepiece_tokenizer")
        self.proto = bytes(proto)
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = cls_id, sep_id, pad_id, unk_id
        self.id_offset = id_offset
        self.id_map = {int(k): int(v) for k, v in (id_map or {}).items()}
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.replace_quotes = replace_quotes
        self.special_tokens = {str(k): int(v) for k, v in (special_tokens or {}).items()}
        self.sentencepiece = tf_text.SentencepieceTokenizer(model=self.proto, out_type=tf.int32)
        self.piece_count = int(self.sentencepiece.vocab_size())
        self._vocabulary_size = vocabulary_size or self.piece_count + id_offset + appended_ids

    @property
    def vocabulary_size(self) -> int:
        return self._vocabulary_size

    @property
    def mask_id(self) -> int | None:  # type: ignore[override]
        return next((self.special_tokens[t] for t in MASK_TOKENS if t in self.special_tokens), None)

    def word_pieces(self) -> WordPieces:
        """A piece that starts with `▁` begins a word; any other continues the one before."""
        pieces = self.sentencepiece.id_to_string(tf.range(self.piece_count)).numpy()
        texts = [""] * self.vocabulary_size
        starts = np.ones(self.vocabulary_size, bool)
        for spm_id, piece in enumerate(pieces):
            output_id = self.id_map.get(spm_id, spm_id + self.id_offset)
            if output_id in self.special_tokens.values() or output_id >= len(texts):
                continue  # never masked: its text and word start do not matter
            text = piece.decode("utf-8")
            texts[output_id] = text.removeprefix(WORD_START)
            starts[output_id] = text.startswith(WORD_START)
        return WordPieces(texts, starts)

    def piece_id(self, piece: str) -> int | None:
        """The output id of a piece in the SentencePiece model, or None if it has none."""
        spm_id = int(self.sentencepiece.string_to_id(piece))
        if self.sentencepiece.id_to_string(spm_id).numpy().decode("utf-8") != piece:
            return None  # string_to_id answers the unknown piece's id for a missing piece
        return self.id_map.get(spm_id, spm_id + self.id_offset)

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """Hugging Face's normalisers that run before the SentencePiece model's own."""
        if self.replace_quotes:
            texts = tf.strings.regex_replace(texts, "``|''", '"')
        if self.strip_accents:
            texts = tf_text.normalize_utf8(texts, "NFKD")
            texts = tf.strings.regex_replace(texts, NONSPACING_MARKS, "")
        if self.lowercase:
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def tokenize(self, texts: Any) -> tf.RaggedTensor:
        """`tf.string [b]` -> ragged int32 ids [b, None]."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if not self.special_tokens:
            return self.tokenize_text(texts)
        # Longest first, so a token that contains another one wins.
        literals = sorted(self.special_tokens, key=len, reverse=True)
        pattern = "|".join(re.escape(token) for token in literals)
        parts = tf_text.regex_split(texts, pattern, keep_delim_regex_pattern=pattern)
        flat = parts.flat_values
        matches = tf.equal(flat[:, None], tf.constant(literals)[None, :])
        is_special = tf.reduce_any(matches, axis=1)
        ids = tf.constant([self.special_tokens[token] for token in literals], tf.int32)
        special_ids = tf.gather(ids, tf.argmax(tf.cast(matches, tf.int32), axis=1))
        special_rows = tf.RaggedTensor.from_row_lengths(
            tf.boolean_mask(special_ids, is_special), tf.cast(is_special, tf.int64)
        )
        text_rows = self.tokenize_text(tf.where(is_special, "", flat))
        per_part = tf.concat([special_rows, text_rows], axis=1)
        return parts.with_flat_values(per_part).merge_dims(-2, -1)

    def tokenize_text(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Text without special tokens -> ids: HF's normalisers, then SentencePiece."""
        ids = self.sentencepiece.tokenize(self.normalize(texts))
        return tf.ragged.map_flat_values(self._map_ids, ids)

    def _map_ids(self, ids: tf.Tensor) -> tf.Tensor:
        mapped = ids + self.id_offset
        for spm_id, output_id in self.id_map.items():
            mapped = tf.where(ids == spm_id, tf.constant(output_id, tf.int32), mapped)
        return mapped

    def settings(self) -> dict[str, Any]:
        """Everything besides the proto that determines the ids."""
        return {
            "cls_id": self.cls_id,
            "sep_id": self.sep_id,
            "pad_id": self.pad_id,
            "unk_id": self.unk_id,
            "id_offset": self.id_offset,
            "id_map": {str(k): v for k, v in self.id_map.items()},
            "vocabulary_size": self.vocabulary_size,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "replace_quotes": self.replace_quotes,
            "special_tokens": dict(self.special_tokens),
        }

    def save(self, folder: Path) -> dict[str, Any]:
        (Path(folder) / MODEL_FILE).write_bytes(self.proto)
        return {"kind": "sentencepiece", "file": MODEL_FILE, **self.settings()}

    @classmethod
    def load(cls, folder: Path, record: dict[str, Any]) -> SentencePieceTokenizer:
        settings = {k: v for k, v in record.items() if k not in ("kind", "file")}
        proto = (Path(folder) / record.get("file", MODEL_FILE)).read_bytes()
        return cls(proto, **settings)

    @classmethod
    def xlm_roberta(
        cls, proto: bytes, vocabulary_size: int | None = None, **normalisation: bool
    ) -> SentencePieceTokenizer:
        """fairseq ids over a SentencePiece model whose ids 0, 1, 2 are `<unk>`, `<s>`, `</s>`.

        `vocabulary_size` defaults to the pieces + 1 (offset) + 1 (`<mask>`), as XLM-R's;
        the literal special tokens are those of Hugging Face's XLM-R tokenizer.
        """
        tokenizer = cls(
            proto,
            cls_id=0,
            sep_id=2,
            pad_id=1,
            unk_id=3,
            id_offset=1,
            id_map={0: 3},
            vocabulary_size=vocabulary_size,
            appended_ids=1,  # fairseq appends <mask> after the pieces
            **normalisation,
        )
        mask_id = tokenizer.piece_count + 1
        tokenizer.special_tokens = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": mask_id}
        return tokenizer
