"""In-graph BERT tokenization, head/tail/head+tail truncation and [CLS] a [SEP] b [SEP] packing.

The same `TextEncoder` runs in the training data pipeline and inside the exported SavedModel,
so served token ids equal training token ids by construction.
"""

from __future__ import annotations

import keras_hub
import tensorflow as tf

TRUNCATIONS = ("head", "tail", "head_tail")

# Hugging Face's BasicTokenizer drops control/format characters (Unicode category C*) except
# \t \n \r, which it treats as whitespace like every Zs space.
CONTROL_CHARACTERS = r"[^\P{C}\t\n\r]"
WHITESPACE = r"[\t\n\r\p{Zs}]"


class TextEncoder:
    """Texts (and optional text pairs) -> ragged token and segment ids of at most `max_length`.

    Args:
        vocabulary: WordPiece vocabulary (list of tokens); needs [CLS], [SEP], [PAD], [UNK].
        lowercase: the original tokenizer's `do_lower_case`. Lower-casing is done with
            `tf.strings.lower` plus accent stripping, as Hugging Face does; keras-hub's own
            `lowercase=True` also NFKC-folds full-width punctuation, which BERT does not.
        max_length: total length including [CLS]/[SEP].
        truncation: "head" keeps the first tokens, "tail" the last, "head_tail" the first
            `head_tokens` plus the last `budget - head_tokens` ("How to Fine-Tune BERT for Text
            Classification?", Sun et al. 2019). Pairs are first shortened longest-first.
    """

    def __init__(
        self,
        vocabulary: list[str],
        lowercase: bool,
        max_length: int,
        truncation: str = "head",
        head_tokens: int = 64,
    ):
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation {truncation!r}: expected one of {', '.join(TRUNCATIONS)}")
        for token in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"):
            if token not in vocabulary:
                raise ValueError(f"the vocabulary has no {token} token")
        if max_length < 4:
            raise ValueError(f"max_length must be at least 4, got {max_length}")
        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        self.max_length = max_length
        self.truncation = truncation
        self.head_tokens = head_tokens
        self.cls_id = self.vocabulary.index("[CLS]")
        self.sep_id = self.vocabulary.index("[SEP]")
        self.pad_id = self.vocabulary.index("[PAD]")
        self.wordpiece = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=self.vocabulary,
            lowercase=False,
            strip_accents=lowercase,
            split_on_cjk=True,
            dtype="int32",
        )

    def settings(self) -> dict:
        """Everything that determines the ids (part of token-cache keys and export metadata)."""
        return {
            "lowercase": self.lowercase,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "head_tokens": self.head_tokens,
        }

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        texts = tf.strings.regex_replace(texts, CONTROL_CHARACTERS, "")
        texts = tf.strings.regex_replace(texts, WHITESPACE, " ")
        if self.lowercase:
            texts = tf.strings.lower(texts, encoding="utf-8")
        return self.wordpiece(texts)

    def __call__(
        self, texts: tf.Tensor, pairs: tf.Tensor | None = None
    ) -> dict[str, tf.RaggedTensor]:
        """Ragged `token_ids` and `segment_ids`, each row at most `max_length` long."""
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
            budget = tf.fill([tf.shape(texts)[0]], self.max_length - 2)
            first = self.truncate(first, tf.cast(budget, tf.int64))
            return self.pack([first])
        second = self.tokenize(pairs)
        budget_first, budget_second = longest_first_budgets(
            first.row_lengths(), second.row_lengths(), self.max_length - 3
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
        batch = segments[0].nrows()
        cls = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(self.cls_id, tf.int32)))
        sep = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(self.sep_id, tf.int32)))
        token_parts, segment_parts = [cls], [tf.zeros_like(cls)]
        for index, segment in enumerate(segments):
            token_parts += [segment, sep]
            segment_id = tf.constant(index, tf.int32)
            segment_parts += [tf.ones_like(segment) * segment_id, tf.ones_like(sep) * segment_id]
        return {
            "token_ids": tf.concat(token_parts, axis=1),
            "segment_ids": tf.concat(segment_parts, axis=1),
        }

    def pad(
        self, encoded: dict[str, tf.RaggedTensor], length: int | None = None
    ) -> dict[str, tf.Tensor]:
        """Dense model inputs; `length=None` pads to the longest row."""
        shape = None if length is None else [None, length]
        token_ids = encoded["token_ids"]
        return {
            "token_ids": token_ids.to_tensor(default_value=self.pad_id, shape=shape),
            "segment_ids": encoded["segment_ids"].to_tensor(default_value=0, shape=shape),
            "padding_mask": tf.ones_like(token_ids).to_tensor(default_value=0, shape=shape),
        }


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
