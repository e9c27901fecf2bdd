"""Whole-word masking for masked-LM training: word boundaries, packed sequences, masks.

1. Word boundaries (`word_starts`): a piece begins a word by its tokenizer's convention
   (`PieceTokenizer.word_pieces`: a piece without `##` in BERT's vocabularies, one with a `▁`
   in SentencePiece's, one with a `Ġ` in byte-level BPE's), except Chinese characters, which
   carry no marker (BERT splits every one off; SentencePiece runs them together): a piece
   that begins with one begins a word when jieba's segmentation of the text starts a word at
   that character (`ChineseWords`, with an optional user dictionary). Latin letters and
   digits keep the tokenizer's convention even inside a jieba word such as `A股`.
2. Packing (`pack_documents`): each document's pieces, followed by a separator, fill
   `[CLS] ... [SEP]` sequences of at most `max_length` tokens; a document longer than a
   sequence is cut at word starts.
3. Masking (`WholeWordMasker`): keras-hub's `MaskedLMMaskGenerator` (a wrapper of
   `tensorflow_text.mask_language_model`) on a `[batch, word, piece]` ragged tensor, which
   selects 15% of the words and masks all pieces of a selected word, each piece then replaced
   by the mask token (80%), a random id (10%) or kept (10%). Special tokens and padding are
   never selected. Training batches are masked afresh each time (`mask_batch`, in tf.data);
   held-out splits once, from a seed (`mask_split`), so every evaluation reads the same masks.

Cui et al. 2021, "Pre-Training with Whole Word Masking for Chinese BERT",
https://arxiv.org/abs/1906.08101
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jieba
import keras_hub
import numpy as np
import tensorflow as tf

from xtune.data.readers import DataError

# BERT's "Chinese character" ranges (CJK Unified Ideographs, extensions, compatibility).
CHINESE_CHARACTER = re.compile(
    "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f]"
)
# How far ahead of the last matched character a piece's character is looked for in the
# text (a character the tokenizer turned into `[UNK]` leaves a gap).
ALIGNMENT_WINDOW = 16
MASK_TOKEN_RATE = 0.8  # of the selected pieces: the mask token
RANDOM_TOKEN_RATE = 0.1  # a random id (the rest, 10%, stay as they are)
POSITIONS_MULTIPLE = 8  # a batch's mask positions are padded to a multiple of this
TOKENIZE_CHUNK = 2048  # texts tokenized in one call

jieba.setLogLevel(logging.WARNING)  # not its "Building prefix dict" lines on every run


class ChineseWords:
    """jieba's word segmentation of Chinese text, with an optional user dictionary (a UTF-8
    file of `word [frequency] [tag]` lines, jieba's format)."""

    def __init__(self, user_dictionary: Path | None = None, key: str = "user_dictionary"):
        self.segmenter = jieba.Tokenizer()
        if user_dictionary is not None:
            if not Path(user_dictionary).is_file():
                raise DataError(f"{user_dictionary}: jieba user dictionary ({key}) not found")
            try:
                self.segmenter.load_userdict(str(user_dictionary))
            except (ValueError, AttributeError) as error:
                raise DataError(
                    f"{user_dictionary}: not a jieba user dictionary ({key}): {error}; expected "
                    "UTF-8 lines of `word [frequency] [tag]`"
                ) from None

    def character_starts(self, text: str) -> list[tuple[str, bool]]:
        """Each Chinese character of `text`, in order, and whether it begins a jieba word."""
        characters = []
        for word in self.segmenter.cut(text):
            characters += [(c, i == 0) for i, c in enumerate(word) if CHINESE_CHARACTER.match(c)]
        return characters


def word_starts(
    token_ids: np.ndarray, pieces: Any, text: str, words: ChineseWords | None
) -> np.ndarray:
    """Whether each piece of one text's `token_ids` begins a word (see the module docstring);
    `pieces` is the tokenizer's `word_pieces()`; `words` None leaves Chinese to it."""
    starts = pieces.starts_word[token_ids].copy()
    if len(starts):
        starts[0] = True
    if words is None or not CHINESE_CHARACTER.search(text):
        return starts
    characters = words.character_starts(text)
    next_character = 0
    for position, token in enumerate(token_ids):
        piece = pieces.texts[token]
        chinese = CHINESE_CHARACTER.findall(piece)
        if not chinese:
            continue
        found = find_character(characters, chinese[0], next_character)
        if found is None:
            continue
        if position > 0 and CHINESE_CHARACTER.match(piece):
            starts[position] = characters[found][1]
        next_character = found + len(chinese)
    return starts


def find_character(characters: list[tuple[str, bool]], character: str, start: int) -> int | None:
    """The index of `character` in `characters[start:]` within `ALIGNMENT_WINDOW`, or None."""
    for index in range(start, min(start + ALIGNMENT_WINDOW, len(characters))):
        if characters[index][0] == character:
            return index
    return None


class DocumentTokenizer:
    """Texts -> each one's piece ids (no special tokens, not truncated) and word starts
    (`whole_words` False: every piece its own word); the tokenizer traced once."""

    def __init__(self, tokenizer: Any, words: ChineseWords | None, whole_words: bool = True):
        self.pieces = tokenizer.word_pieces() if whole_words else None
        self.words = words
        self.tokenize = tf.function(
            tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)]
        )

    def __call__(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        documents = []
        for begin in range(0, len(texts), TOKENIZE_CHUNK):
            chunk = texts[begin : begin + TOKENIZE_CHUNK]
            ragged = self.tokenize(tf.constant(chunk))
            ids, splits = ragged.flat_values.numpy().astype(np.int32), ragged.row_splits.numpy()
            for index, text in enumerate(chunk):
                row = ids[splits[index] : splits[index + 1]]
                documents.append((row, self.starts(row, text)))
        return documents

    def starts(self, row: np.ndarray, text: str) -> np.ndarray:
        if self.pieces is None:
            return np.ones(len(row), bool)
        return word_starts(row, self.pieces, text, self.words)


def tokenize_documents(
    texts: list[str], tokenizer: Any, words: ChineseWords | None, whole_words: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`DocumentTokenizer(tokenizer, words, whole_words)(texts)`, for one set of texts."""
    return DocumentTokenizer(tokenizer, words, whole_words)(texts)


@dataclass
class PackedSequences:
    """Packed `[CLS] ... [SEP]` sequences, flat, with each token's word-start flag."""

    token_ids: np.ndarray  # int32 [tokens]
    word_starts: np.ndarray  # int8 [tokens]; 1 where a word (or a special token) begins
    row_splits: np.ndarray  # int64 [sequences + 1]

    def __len__(self) -> int:
        return len(self.row_splits) - 1


def chunks(ids: np.ndarray, starts: np.ndarray, budget: int) -> list[tuple[np.ndarray, ...]]:
    """A document's pieces in parts of at most `budget`, each cut before a word start when a
    word start leaves the part non-empty (else in the middle of a word)."""
    parts, begin = [], 0
    while len(ids) - begin > budget:
        end = begin + budget
        word_begins = np.flatnonzero(starts[begin + 1 : end + 1]) + begin + 1
        end = int(word_begins[-1]) if len(word_begins) else end
        parts.append((ids[begin:end], starts[begin:end]))
        begin = end
    parts.append((ids[begin:], starts[begin:]))
    return parts


def pack_documents(
    documents: list[tuple[np.ndarray, np.ndarray]],
    max_length: int,
    cls_id: int,
    sep_id: int,
    pack: bool = True,
) -> PackedSequences:
    """`[CLS] d1 [SEP] d2 [SEP] ...` sequences of at most `max_length` tokens from documents'
    (ids, word starts): a document goes into the current sequence when it fits, else starts
    the next one (`pack` False: every document starts one)."""
    budget = max_length - 2
    sequences: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    starts: list[int] = []
    for document_ids, document_starts in documents:
        if not len(document_ids):
            continue
        for part_ids, part_starts in chunks(document_ids, document_starts, budget):
            if ids and (not pack or len(ids) + 1 + len(part_ids) > budget):
                sequences.append((ids, starts))
                ids, starts = [], []
            if ids:
                ids.append(sep_id)
                starts.append(1)
            ids += part_ids.tolist()
            starts += [1, *part_starts[1:].astype(int).tolist()]
    if ids:
        sequences.append((ids, starts))
    token_ids = [[cls_id, *row, sep_id] for row, _ in sequences]
    flags = [[1, *row, 1] for _, row in sequences]
    lengths = [len(row) for row in token_ids]
    return PackedSequences(
        np.asarray([t for row in token_ids for t in row], np.int32),
        np.asarray([f for row in flags for f in row], np.int8),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    )


@dataclass(frozen=True)
class MaskingSettings:
    """What masking needs of the (possibly trimmed) tokenizer and the task's settings."""

    vocabulary_size: int
    mask_id: int
    unselectable_ids: tuple[int, ...]  # special tokens: never masked
    rate: float = 0.15

    @classmethod
    def of(cls, tokenizer: Any, rate: float) -> MaskingSettings:
        specials = {tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.unk_id}
        specials.add(tokenizer.mask_id)
        return cls(tokenizer.vocabulary_size, tokenizer.mask_id, tuple(sorted(specials)), rate)

    def generator(self) -> Any:
        """keras-hub's `MaskedLMMaskGenerator` with these settings and 80/10/10 replacement.

        Call it in a graph (`tf.data`, a `tf.function`): there it runs its TensorFlow path,
        which masks whole words; called eagerly it runs a pure-Python one that reads
        `[batch, word, piece]` as flat pieces."""
        return keras_hub.layers.MaskedLMMaskGenerator(
            vocabulary_size=self.vocabulary_size,
            mask_selection_rate=self.rate,
            mask_token_id=self.mask_id,
            unselectable_token_ids=list(self.unselectable_ids),
            mask_token_rate=MASK_TOKEN_RATE,
            random_token_rate=RANDOM_TOKEN_RATE,
        )


def words_of(token_ids: tf.Tensor, padding_mask: tf.Tensor, starts: tf.Tensor) -> tf.RaggedTensor:
    """A padded batch as `[batch, (words), (pieces)]`: padding dropped, a word from each piece
    flagged in `starts` up to the next flagged one (every row's first piece is flagged)."""
    real = tf.cast(padding_mask, tf.bool)
    pieces = tf.ragged.boolean_mask(token_ids, real)
    flags = tf.cast(tf.ragged.boolean_mask(starts, real), tf.int64)
    word_index = tf.cumsum(flags.flat_values) - 1
    words = tf.RaggedTensor.from_value_rowids(
        pieces.flat_values, word_index, nrows=tf.reduce_sum(flags.flat_values)
    )
    return tf.RaggedTensor.from_row_lengths(words, tf.reduce_sum(flags, axis=1))


class WholeWordMasker:
    """Masks padded batches of packed sequences (see the module docstring); in a graph of its
    own (`MaskingSettings.generator`), also when called eagerly."""

    def __init__(self, settings: MaskingSettings):
        self.settings = settings
        self.generator = settings.generator()
        self.masked = tf.function(self.mask, reduce_retracing=True)

    def __call__(
        self, token_ids: Any, padding_mask: Any, starts: Any
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return self.masked(
            tf.convert_to_tensor(token_ids, tf.int32),
            tf.convert_to_tensor(padding_mask, tf.int32),
            tf.convert_to_tensor(starts, tf.int32),
        )

    def mask(
        self, token_ids: tf.Tensor, padding_mask: tf.Tensor, starts: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(masked token ids `[b, t]`, mask positions `[b, p]`, original ids there `[b, p]`,
        -1 where a row has fewer than `p` masked pieces); `p` is the batch's most masked
        pieces rounded up to a multiple of `POSITIONS_MULTIPLE`."""
        masked = self.generator(words_of(token_ids, padding_mask, starts))
        masked_ids = masked["token_ids"].to_tensor(default_value=0, shape=tf.shape(token_ids))
        positions, originals = masked["mask_positions"], masked["mask_ids"]
        width = tf.reduce_max(tf.concat([positions.row_lengths(), [1]], axis=0))
        width = (width + POSITIONS_MULTIPLE - 1) // POSITIONS_MULTIPLE * POSITIONS_MULTIPLE
        shape = tf.stack([tf.shape(token_ids, out_type=tf.int64)[0], width])
        positions = tf.cast(positions.to_tensor(default_value=0, shape=shape), tf.int32)
        originals = tf.cast(originals.to_tensor(default_value=-1, shape=shape), tf.int32)
        return masked_ids, positions, originals


@dataclass
class MaskedSplit:
    """A split masked once: masked token ids (flat, `row_splits`), and each row's masked
    positions and original ids (flat, `mask_splits`)."""

    token_ids: np.ndarray
    row_splits: np.ndarray
    positions: np.ndarray
    originals: np.ndarray
    mask_splits: np.ndarray

    def __len__(self) -> int:
        return len(self.row_splits) - 1


def mask_split(sequences: PackedSequences, settings: MaskingSettings, seed: int) -> MaskedSplit:
    """`sequences` masked once, the same way for the same seed: in a graph of its own with
    that graph-level seed (neither TensorFlow's global seed nor training's random ops change
    it, nor does it change them), one row at a time (`tensorflow_text` shuffles a batch's
    rows in parallel iterations that draw from one random op in a varying order)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.random.set_seed(seed)
        tokens = tf.compat.v1.placeholder(tf.int32, [1, None])
        starts = tf.compat.v1.placeholder(tf.int32, [1, None])
        masked = settings.generator()(words_of(tokens, tf.ones_like(tokens), starts))
        fetches = (
            masked["token_ids"].flat_values,
            masked["mask_positions"].flat_values,
            masked["mask_ids"].flat_values,
        )
        with tf.compat.v1.Session(graph=graph) as session:
            rows = [
                session.run(fetches, {tokens: [row_tokens], starts: [row_starts]})
                for row_tokens, row_starts in zip(*rows_of(sequences), strict=True)
            ]
    counts = [len(positions) for _, positions, _ in rows]
    return MaskedSplit(
        np.concatenate([row[0] for row in rows]).astype(np.int32),
        sequences.row_splits,
        np.concatenate([row[1] for row in rows]).astype(np.int32),
        np.concatenate([row[2] for row in rows]).astype(np.int32),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )


def rows_of(sequences: PackedSequences) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each sequence's token ids and word-start flags."""
    splits = sequences.row_splits[1:-1]
    return np.split(sequences.token_ids, splits), np.split(sequences.word_starts, splits)
