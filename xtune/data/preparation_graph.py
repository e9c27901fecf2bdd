"""`GraphPreparation`: `TextPreparation.clean` as TensorFlow string ops, for the export's graph.

Each step is the Python step's twin (`xtune.data.preparation` documents them): code point
arithmetic for the width, `tf.strings.regex_replace` with the same patterns written for RE2
(`Patterns("re2")`) for line ends, control characters, boilerplate spans and whitespace, and
for boilerplate sentences the same sentence boundaries found on code points, whose keys are
looked up in a hash table of the learned ones. Core TensorFlow ops only.
tests/data/test_preparation.py checks that both give the same text on tricky strings.
"""

from __future__ import annotations

import tensorflow as tf

from xtune.data.preparation import (
    FULL_WIDTH_SHIFT,
    IDEOGRAPHIC_SPACE,
    SENTENCE_ENDS,
    WHITESPACE,
    WIDTH_RANGES,
    Patterns,
    TextPreparation,
    literal_trie,
    ranges_of,
)

RE2 = Patterns("re2")


class GraphPreparation(tf.Module):
    """Strings `[batch]` -> their prepared strings `[batch]`; a tracked attribute of the
    serving module, so the SavedModel keeps the sentence table."""

    def __init__(self, preparation: TextPreparation):
        super().__init__(name="text_preparation")
        self.width = preparation.width
        self.control_characters = preparation.control_characters
        self.whitespace = preparation.whitespace
        self.sentence_table = None
        if preparation.sentences:
            keys = tf.constant(list(preparation.sentences), tf.string)
            self.sentence_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, tf.int64)),
                default_value=0,
            )
        self.span_pattern = literal_trie(preparation.spans) if preparation.spans else None

    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        if self.width != "none":
            texts = self.narrow(texts)
        if self.control_characters:
            texts = tf.strings.regex_replace(texts, RE2.line_ends, "\n")
            texts = tf.strings.regex_replace(texts, RE2.control, "")
        if self.sentence_table is not None:
            texts = self.remove_sentences(texts)
        if self.span_pattern is not None:
            texts = tf.strings.regex_replace(texts, self.span_pattern, "")
        if self.whitespace == "collapse":
            # After the collapse the only whitespace left is single spaces, which is all
            # `strip` (ASCII whitespace) can meet.
            texts = tf.strings.strip(tf.strings.regex_replace(texts, RE2.whitespace_run, " "))
        return texts

    def narrow(self, texts: tf.Tensor) -> tf.Tensor:
        """Full-width code points of `width`'s ranges (and U+3000 for `ascii`) to ASCII."""
        codes = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")
        values = codes.flat_values
        inside = in_ranges(values, WIDTH_RANGES[self.width])
        values = tf.where(inside, values - FULL_WIDTH_SHIFT, values)
        if self.width == "ascii":
            values = tf.where(values == IDEOGRAPHIC_SPACE, tf.constant(0x20, values.dtype), values)
        return tf.strings.unicode_encode(codes.with_flat_values(values), "UTF-8")

    def remove_sentences(self, texts: tf.Tensor) -> tf.Tensor:
        """Sentences whose key is in the table removed (with their sentence ends).

        On code points rather than with a regex split: TF-Text's `regex_split` stops at a NUL
        character. A sentence ends after the last of a run of sentence ends, and at the end of
        the text (`Patterns.sentence`)."""
        codes = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")
        values, rows = codes.flat_values, codes.value_rowids()
        is_end = in_ranges(values, ranges_of(SENTENCE_ENDS))
        same_row_next = tf.concat([tf.equal(rows[1:], rows[:-1]), [False]], axis=0)
        next_is_end = tf.concat([is_end[1:], [False]], axis=0) & same_row_next
        last = (is_end & ~next_is_end) | ~same_row_next  # the last character of a sentence
        sentence = tf.cumsum(tf.cast(last, tf.int64), exclusive=True)
        count = tf.reduce_sum(tf.cast(last, tf.int64))
        in_key = ~in_ranges(values, [*ranges_of(SENTENCE_ENDS), *WHITESPACE])
        keys = tf.strings.unicode_encode(
            tf.RaggedTensor.from_value_rowids(
                tf.boolean_mask(values, in_key), tf.boolean_mask(sentence, in_key), nrows=count
            ),
            "UTF-8",
        )
        removed = tf.not_equal(self.sentence_table.lookup(keys), 0)
        keep = ~tf.gather(removed, sentence)
        kept = tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(values, keep), tf.boolean_mask(rows, keep), nrows=codes.nrows()
        )
        return tf.strings.unicode_encode(kept, "UTF-8")


def in_ranges(values: tf.Tensor, ranges: list[tuple[int, int]]) -> tf.Tensor:
    """Whether each code point is in one of the inclusive `ranges`."""
    inside = tf.zeros_like(values, tf.bool)
    for first, last in ranges:
        inside |= (values >= first) & (values <= last)
    return inside
