"""In-graph tokenization, head/tail/head+tail truncation, packing of one or two segments, padding.

The same `TextEncoder` runs in the training data pipeline and inside the exported SavedModel,
so served token ids equal training token ids by construction. What is family-specific (the
tokenizer and how segments are joined) comes from the encoder adapter: a `PieceTokenizer` and
a `Packing`.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from typing import Any

import tensorflow as tf

TRUNCATIONS = ("head", "tail", "head_tail", "head_tail_pair")
STRINGS = tf.TensorSpec([None], tf.string)
# Tracing the tokenizer, truncation and packing graph costs seconds (some 2,000 ops, most of
# them ragged-shape checks), while a traced graph encodes a batch in milliseconds. Every
# `TextEncoder` of this process with the same identity (tokenizer files, packing, settings)
# encodes through the first one's traced functions: a training run, its reload and a second
# run of a grid trace once. `keras.backend.clear_session()` frees SentencePiece resources the
# traced graphs hold: whoever calls it calls `forget_traced_encoders()` too (the grid does).
TRACED_ENCODERS: OrderedDict[tuple[str, str], TextEncoder] = OrderedDict()
MAX_TRACED_ENCODERS = 8


def traced_encoder(text_encoder: TextEncoder) -> TextEncoder:
    """The process's first `TextEncoder` with `text_encoder`'s identity (least recently used
    ones are dropped beyond `MAX_TRACED_ENCODERS`)."""
    key = text_encoder.identity
    shared = TRACED_ENCODERS.setdefault(key, text_encoder)
    TRACED_ENCODERS.move_to_end(key)
    while len(TRACED_ENCODERS) > MAX_TRACED_ENCODERS:
        TRACED_ENCODERS.popitem(last=False)
    return shared


def forget_traced_encoders() -> None:
    TRACED_ENCODERS.clear()


class TextEncoder:
    """Texts (and optional text pairs) -> ragged token (and segment) ids of at most `max_length`.

    Args:
        tokenizer: the encoder's `PieceTokenizer` (raw text -> ids, no special tokens).
        packing: the encoder's `Packing`: "bert" style is `[CLS] a [SEP] b [SEP]` with segment
            ids 0 / 1; "roberta" style is `<s> a </s></s> b </s>` (segment ids all 0, or none
            when the backbone takes none).
        max_length: total length including the special tokens.
        truncation: "head" keeps the first tokens, "tail" the last, "head_tail" the first
            `head_tokens` plus the last `budget - head_tokens` ("How to Fine-Tune BERT for Text
            Classification?", Sun et al. 2019). Pairs are first shortened longest-first.
            "head_tail_pair" keeps the same head and tail of a single text but packs them as
            two segments, `[CLS] head [SEP] tail [SEP]` (the head is the first `head_tokens`
            tokens, the tail the rest up to the pair budget: empty for a short text).
    """

    def __init__(
        self,
        tokenizer: Any,
        packing: Any,
        max_length: int,
        truncation: str = "head",
        head_tokens: int = 64,
    ):
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation {truncation!r}: expected one of {', '.join(TRUNCATIONS)}")
        shortest = packing.special_tokens(2) + 1
        if max_length < shortest:
            raise ValueError(f"max_length must be at least {shortest}, got {max_length}")
        self.tokenizer = tokenizer
        self.packing = packing
        self.max_length = max_length
        self.truncation = truncation
        self.head_tokens = head_tokens

    @classmethod
    def from_settings(cls, tokenizer: Any, packing: Any, settings: dict[str, Any]) -> TextEncoder:
        """Rebuild from `settings()` (a run folder's tokenizer.json; older ones also hold
        `lowercase`, which now belongs to the tokenizer)."""
        keys = ("max_length", "truncation", "head_tokens")
        return cls(tokenizer, packing, **{key: settings[key] for key in keys if key in settings})

    @property
    def input_names(self) -> tuple[str, ...]:
        """The dense inputs `pad` returns (the model's inputs)."""
        if self.packing.segment_ids:
            return ("token_ids", "segment_ids", "padding_mask")
        return ("token_ids", "padding_mask")

    @property
    def cls_id(self) -> int:
        return self.tokenizer.cls_id

    @property
    def sep_id(self) -> int:
        return self.tokenizer.sep_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    def settings(self) -> dict:
        """What determines the ids besides the tokenizer's files (run folder, export metadata)."""
        return {
            **self.tokenizer.settings(),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "head_tokens": self.head_tokens,
        }

    def fingerprint(self) -> str:
        """Identity of the tokenizer (its files), the packing and the settings: cache keys."""
        packing = f"{self.packing.style}/{self.packing.segment_ids}"
        return f"{type(self.tokenizer).__name__}:{self.tokenizer.fingerprint()}:{packing}"

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        return self.tokenizer.tokenize(texts)

    def __call__(
        self, texts: tf.Tensor, pairs: tf.Tensor | None = None
    ) -> dict[str, tf.RaggedTensor]:
        """Ragged `token_ids` (and `segment_ids`), each row at most `max_length` long."""
        if not tf.executing_eagerly():
            return self.encode(texts, pairs)
        # keras-hub turns eager tokenizer outputs into Python lists; stay in graph mode.
        texts = tf.reshape(tf.convert_to_tensor(texts, tf.string), [-1])
        traced = traced_encoder(self)
        if pairs is None:
            return traced.encode_texts(texts)
        return traced.encode_pairs(texts, tf.reshape(tf.convert_to_tensor(pairs, tf.string), [-1]))

    @functools.cached_property
    def encode_texts(self) -> Any:
        """`encode` traced once for any batch of single texts."""
        return tf.function(self.encode, input_signature=[STRINGS], autograph=False)

    @functools.cached_property
    def encode_pairs(self) -> Any:
        """`encode` traced once for any batch of text pairs."""
        return tf.function(self.encode, input_signature=[STRINGS, STRINGS], autograph=False)

    @functools.cached_property
    def identity(self) -> tuple[str, str]:
        """What determines the ids: the tokenizer's files, the packing and the settings."""
        return self.fingerprint(), json.dumps(self.settings(), sort_keys=True)

    def encode(
        self, texts: tf.Tensor, pairs: tf.Tensor | None = None
    ) -> dict[str, tf.RaggedTensor]:
        first = self.tokenize(texts)
        if self.truncation == "head_tail_pair":
            if pairs is not None:
                raise ValueError("truncation head_tail_pair makes the pair from the text alone")
            return self.pack(self.head_and_tail(first))
        if pairs is None:
            budget = self.max_length - self.packing.special_tokens(1)
            budget = tf.fill([tf.shape(texts)[0]], budget)
            first = self.truncate(first, tf.cast(budget, tf.int64))
            return self.pack([first])
        second = self.tokenize(pairs)
        budget_first, budget_second = longest_first_budgets(
            first.row_lengths(),
            second.row_lengths(),
            self.max_length - self.packing.special_tokens(2),
        )
        return self.pack([self.truncate(first, budget_first), self.truncate(second, budget_second)])

    def truncate(self, tokens: tf.RaggedTensor, budget: tf.Tensor) -> tf.RaggedTensor:
        """Keep `head` tokens from the start and `budget - head` from the end of each row."""
        if self.truncation == "head":
            head = budget
        elif self.truncation == "tail":
            head = tf.zeros_like(budget)
        else:
            head = tf.minimum(budget, self.head_tokens)
        lengths = tokens.row_lengths()
        rows = tokens.value_rowids()
        # On the flat values: a few ops, where ragged range / mask ops add hundreds of shape
        # checks to the graph.
        positions = positions_in_rows(tokens, rows)
        keep = (positions < tf.gather(head, rows)) | (
            positions >= tf.gather(lengths - (budget - head), rows)
        )
        return tf.RaggedTensor.from_row_lengths(
            tf.boolean_mask(tokens.flat_values, keep), tf.minimum(lengths, budget), validate=False
        )

    def head_and_tail(self, tokens: tf.RaggedTensor) -> list[tf.RaggedTensor]:
        """`head_tail_pair`: each row's first `head_tokens` tokens, and its last tokens up to
        the budget of a pair (without overlapping the head)."""
        budget = self.max_length - self.packing.special_tokens(2)
        lengths = tokens.row_lengths()
        head = tf.minimum(lengths, min(self.head_tokens, budget))
        tail = tf.minimum(lengths - head, budget - head)
        rows = tokens.value_rowids()
        positions = positions_in_rows(tokens, rows)
        in_head = positions < tf.gather(head, rows)
        in_tail = positions >= tf.gather(lengths - tail, rows)
        return [
            tf.RaggedTensor.from_row_lengths(
                tf.boolean_mask(tokens.flat_values, keep), length, validate=False
            )
            for keep, length in ((in_head, head), (in_tail, tail))
        ]

    def pack(self, segments: list[tf.RaggedTensor]) -> dict[str, tf.RaggedTensor]:
        """Bert: `[CLS] a [SEP] b [SEP]`, segment ids 0 up to the first [SEP], then 1.
        Roberta: `<s> a </s></s> b </s>`, segment ids all 0."""
        roberta = self.packing.style == "roberta"
        token_parts: list[tf.RaggedTensor | int] = [self.cls_id]
        segment_parts: list[tf.RaggedTensor | int] = [0]
        for index, segment in enumerate(segments):
            segment_id = 0 if roberta else index
            opening = [self.sep_id] if roberta and index > 0 else []  # the second </s> of </s></s>
            for part in [*opening, segment, self.sep_id]:
                token_parts.append(part)
                segment_parts.append(
                    segment_id
                    if isinstance(part, int)
                    else part.with_flat_values(tf.fill(tf.shape(part.flat_values), segment_id))
                )
        encoded = {"token_ids": concat_rows(token_parts, segments[0].nrows())}
        if self.packing.segment_ids:
            encoded["segment_ids"] = concat_rows(segment_parts, segments[0].nrows())
        return encoded

    def pad(
        self, encoded: dict[str, tf.RaggedTensor], length: int | None = None
    ) -> dict[str, tf.Tensor]:
        """Dense model inputs (`input_names`); `length=None` pads to the longest row."""
        shape = None if length is None else [None, length]
        token_ids = encoded["token_ids"]
        dense = {"token_ids": token_ids.to_tensor(default_value=self.pad_id, shape=shape)}
        if self.packing.segment_ids:
            dense["segment_ids"] = encoded["segment_ids"].to_tensor(default_value=0, shape=shape)
        dense["padding_mask"] = tf.ones_like(token_ids).to_tensor(default_value=0, shape=shape)
        return dense


def positions_in_rows(tokens: tf.RaggedTensor, rows: tf.Tensor) -> tf.Tensor:
    """Each flat value's position within its row; `rows` is `tokens.value_rowids()`."""
    return tf.range(tf.size(rows, out_type=tf.int64)) - tf.gather(tokens.row_starts(), rows)


def concat_rows(parts: list[tf.RaggedTensor | int], rows: tf.Tensor) -> tf.RaggedTensor:
    """Row-wise concatenation of ragged int32 `[rows, None]` parts; an int part is that one id
    in every row. Computed on flat values (each value's place in the output, then one gather):
    a ragged `tf.concat` puts hundreds of shape checks into the traced graph."""
    lengths, values, places = [], [], []
    for part in parts:
        if isinstance(part, int):
            lengths.append(tf.ones([rows], tf.int64))
            values.append(tf.fill([rows], tf.constant(part, tf.int32)))
        else:
            lengths.append(part.row_lengths())
            values.append(part.flat_values)
    row_lengths = tf.add_n(lengths)
    start = tf.cumsum(row_lengths, exclusive=True)  # where each part begins in the output
    for part, length in zip(parts, lengths, strict=True):
        if isinstance(part, int):
            places.append(start)
        else:
            part_rows = part.value_rowids()
            places.append(tf.gather(start, part_rows) + positions_in_rows(part, part_rows))
        start += length
    order = tf.math.invert_permutation(tf.concat(places, axis=0))
    return tf.RaggedTensor.from_row_lengths(
        tf.gather(tf.concat(values, axis=0), order), row_lengths, validate=False
    )


def longest_first_budgets(
    first_lengths: tf.Tensor, second_lengths: tf.Tensor, total: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-row token budgets for a pair, as Hugging Face's `longest_first` truncation.

    Tokens are removed one at a time from the longer segment (the second on ties), so the
    shorter segment is kept whole when it fits in half the budget.
    """
    total = tf.constant(total, tf.int64)
    half_up = (total + 1) // 2
    first = tf.minimum(first_lengths, tf.maximum(total - second_lengths, half_up))
    second = tf.minimum(second_lengths, total - first)
    return first, second
