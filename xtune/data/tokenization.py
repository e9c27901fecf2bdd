"""In-graph tokenization, head/tail/head+tail truncation, packing of one or two segments, padding.

The same `TextEncoder` runs in the training data pipeline and inside the exported SavedModel,
so served token ids equal training token ids by construction. What is family-specific (the
tokenizer and how segments are joined) comes from the encoder adapter: a `PieceTokenizer` and
a `Packing`.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

TRUNCATIONS = ("head", "tail", "head_tail")


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
        if tf.executing_eagerly():
            # keras-hub turns eager tokenizer outputs into Python lists; stay in graph mode.
            return self._graph_encode(tf.convert_to_tensor(texts), pairs)
        return self.encode(texts, pairs)

    @tf.function(reduce_retracing=True)
    def _graph_encode(
        self, texts: tf.Tensor, pairs: tf.Tensor | None
    ) -> dict[str, tf.RaggedTensor]:
        return self.encode(texts, pairs)

    def encode(
        self, texts: tf.Tensor, pairs: tf.Tensor | None = None
    ) -> dict[str, tf.RaggedTensor]:
        first = self.tokenize(texts)
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
        tail = budget - head
        lengths = tokens.row_lengths()
        positions = tf.ragged.range(lengths)
        keep = (positions < head[:, None]) | (positions >= (lengths - tail)[:, None])
        return tf.ragged.boolean_mask(tokens, keep)

    def pack(self, segments: list[tf.RaggedTensor]) -> dict[str, tf.RaggedTensor]:
        """Bert: `[CLS] a [SEP] b [SEP]`, segment ids 0 up to the first [SEP], then 1.
        Roberta: `<s> a </s></s> b </s>`, segment ids all 0."""
        batch = segments[0].nrows()

        def special(token_id: int) -> tf.RaggedTensor:
            return tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(token_id, tf.int32)))

        cls, sep = special(self.cls_id), special(self.sep_id)
        roberta = self.packing.style == "roberta"
        token_parts, segment_parts = [cls], [tf.zeros_like(cls)]
        for index, segment in enumerate(segments):
            segment_id = tf.constant(0 if roberta else index, tf.int32)
            opening = [sep] if roberta and index > 0 else []  # the second </s> of </s></s>
            for part in [*opening, segment, sep]:
                token_parts.append(part)
                segment_parts.append(tf.ones_like(part) * segment_id)
        encoded = {"token_ids": tf.concat(token_parts, axis=1)}
        if self.packing.segment_ids:
            encoded["segment_ids"] = tf.concat(segment_parts, axis=1)
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
