"""Whole-word masking: word boundaries (jieba words, WordPiece `##`, SentencePiece `▁`), packing,
and keras-hub's mask generator on `[batch, word, piece]`: masked positions cover whole words,
the 80/10/10 replacement split, special tokens and padding never masked, held-out masks fixed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import TINY_VOCAB
from xtune.data.readers import DataError
from xtune.data.whole_word_masking import (
    ChineseWords,
    MaskingSettings,
    PackedSequences,
    WholeWordMasker,
    mask_split,
    pack_documents,
    tokenize_documents,
)
from xtune.encoders.bert import WordPieceTokenizer, read_vocabulary
from xtune.encoders.sentencepiece_tokenizer import SentencePieceTokenizer

# jieba: 我 / 学习 / 北京 / 天气 / 今年 / 价格 (each character is in the tiny vocabulary)
CHINESE = "我学习北京天气今年价格"
CHINESE_STARTS = [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
ENGLISH_VOCABULARY = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "cat", "##s", "un", "##believ", "##able", "dog", "ran", "far",
]  # fmt: skip


def chinese_tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer(read_vocabulary(TINY_VOCAB), lowercase=True)


def english_tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer(ENGLISH_VOCABULARY, lowercase=True)


def sentencepiece_tokenizer() -> SentencePieceTokenizer:
    """XLM-R ids over a unigram model whose multi-character Chinese pieces cross jieba's
    words: `北京天气` is `▁北京` + `天气`, `学习北京` is `▁学习` + `北京`."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    kinds = model_pb2.ModelProto.SentencePiece
    proto.pieces.add(piece="<unk>", score=0.0, type=kinds.UNKNOWN)
    proto.pieces.add(piece="<s>", score=0.0, type=kinds.CONTROL)
    proto.pieces.add(piece="</s>", score=0.0, type=kinds.CONTROL)
    pieces = ["▁", "▁我", "▁学习", "北京", "▁北京", "天气", "今年", "价格", "▁hello", "wor", "ld"]
    pieces += list("我学习北京天气今年价格helowrd")
    for piece in pieces:
        proto.pieces.add(piece=piece, score=-1.0 if len(piece.lstrip("▁")) > 1 else -5.0)
    proto.trainer_spec.model_type = model_pb2.TrainerSpec.UNIGRAM
    proto.trainer_spec.vocab_size = len(proto.pieces)
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id = 0, 1
    proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = 2, -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    proto.normalizer_spec.escape_whitespaces = True
    return SentencePieceTokenizer.xlm_roberta(proto.SerializeToString())


def spans(starts: np.ndarray) -> list[range]:
    """The positions of each word of one row (a word from each start to the next)."""
    begins = [int(i) for i in np.flatnonzero(starts)] + [len(starts)]
    return [range(a, b) for a, b in zip(begins[:-1], begins[1:], strict=True)]


def settings(tokenizer, rate: float = 0.15) -> MaskingSettings:
    return MaskingSettings.of(tokenizer, rate)


def batch_of(sequences: PackedSequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sequences padded with id 0 to one length: (token ids, padding mask, starts)."""
    lengths = np.diff(sequences.row_splits)
    shape = (len(lengths), int(lengths.max()))
    tokens, mask, starts = np.zeros(shape, np.int32), np.zeros(shape, np.int32), np.zeros(shape)
    for row, (begin, end) in enumerate(
        zip(sequences.row_splits, sequences.row_splits[1:], strict=False)
    ):
        tokens[row, : end - begin] = sequences.token_ids[begin:end]
        starts[row, : end - begin] = sequences.word_starts[begin:end]
        mask[row, : end - begin] = 1
    return tokens, mask, starts.astype(np.int32)


def masked_rows(masker: WholeWordMasker, batch) -> list[tuple[set[int], np.ndarray]]:
    """Each row's set of masked positions and its masked token ids."""
    token_ids, positions, originals = (np.asarray(x) for x in masker(*batch))
    return [
        ({int(p) for p, o in zip(row_positions, row_originals, strict=True) if o >= 0}, row_ids)
        for row_positions, row_originals, row_ids in zip(
            positions, originals, token_ids, strict=True
        )
    ]


def test_chinese_word_starts_follow_jieba():
    (document,) = tokenize_documents([CHINESE], chinese_tokenizer(), ChineseWords())
    assert document[1].astype(int).tolist() == CHINESE_STARTS
    (plain,) = tokenize_documents([CHINESE], chinese_tokenizer(), None)
    assert plain[1].all()  # without jieba every character is its own word


def test_user_dictionary_joins_characters(tmp_path):
    dictionary = tmp_path / "words.txt"
    dictionary.write_text("北京天气 100000\n", encoding="utf-8")
    (document,) = tokenize_documents([CHINESE], chinese_tokenizer(), ChineseWords(dictionary))
    assert document[1].astype(int).tolist()[3:7] == [1, 0, 0, 0]


def test_missing_user_dictionary_names_file_and_key(tmp_path):
    with pytest.raises(DataError, match=r"words\.txt.*tasks\.lm\.mlm\.user_dictionary"):
        ChineseWords(tmp_path / "words.txt", "tasks.lm.mlm.user_dictionary")


def test_wordpiece_continuations_join_their_word():
    (document,) = tokenize_documents(["the cats unbelievable"], english_tokenizer(), None)
    pieces = [ENGLISH_VOCABULARY[i] for i in document[0]]
    assert pieces == ["the", "cat", "##s", "un", "##believ", "##able"]
    assert document[1].astype(int).tolist() == [1, 1, 0, 1, 0, 0]


def test_sentencepiece_word_starts_with_jieba_inside_a_run():
    tokenizer = sentencepiece_tokenizer()
    text = "学习北京天气 helloworld"
    ((ids, starts),) = tokenize_documents([text], tokenizer, ChineseWords())
    pieces = tokenizer.word_pieces()
    assert [pieces.texts[i] for i in ids] == ["学习", "北京", "天气", "hello", "wor", "ld"]
    # `北京` and `天气` carry no `▁` but begin jieba words; `wor`, `ld` continue `▁hello`.
    assert starts.astype(int).tolist() == [1, 1, 1, 1, 0, 0]
    ((_, plain),) = tokenize_documents([text], tokenizer, None)
    assert plain.astype(int).tolist() == [1, 0, 0, 1, 0, 0]


def test_packing_fills_sequences_and_cuts_long_documents_at_word_starts():
    documents = [
        (np.arange(10, 16), np.array([1, 0, 1, 0, 0, 1], bool)),
        (np.arange(20, 23), np.ones(3, bool)),
        (np.arange(30, 45), np.array([1, 0, 0] * 5, bool)),
    ]
    packed = pack_documents(documents, max_length=12, cls_id=2, sep_id=3)
    rows = np.split(packed.token_ids, packed.row_splits[1:-1])
    assert [row.tolist() for row in rows] == [
        [2, *range(10, 16), 3, *range(20, 23), 3],  # two documents, a separator between
        [2, *range(30, 39), 3],  # 15 pieces: cut at the word start within 10
        [2, *range(39, 45), 3],
    ]
    assert max(np.diff(packed.row_splits)) <= 12
    one_each = pack_documents(documents[:2], max_length=12, cls_id=2, sep_id=3, pack=False)
    assert len(one_each) == 2


def test_masked_positions_cover_whole_words():
    tokenizer = chinese_tokenizer()
    texts = [CHINESE * 2, "北京天气" * 3, "学习价格今年我" * 2] * 30
    documents = tokenize_documents(texts, tokenizer, ChineseWords())
    packed = pack_documents(documents, 48, tokenizer.cls_id, tokenizer.sep_id, pack=False)
    batch = batch_of(packed)
    masker = WholeWordMasker(settings(tokenizer, rate=0.3))
    words_masked = 0
    for _ in range(5):
        for row, (positions, _) in enumerate(masked_rows(masker, batch)):
            for word in spans(batch[2][row][: batch[1][row].sum()]):
                covered = positions & set(word)
                assert not covered or covered == set(word), (row, word, positions)
                words_masked += len(word) > 1 and bool(covered)
    assert words_masked > 100  # multi-character words were masked, always whole


def test_wordpiece_words_are_masked_whole():
    tokenizer = english_tokenizer()
    documents = tokenize_documents(["the cats unbelievable dog ran far"] * 200, tokenizer, None)
    packed = pack_documents(documents, 16, tokenizer.cls_id, tokenizer.sep_id, pack=False)
    batch = batch_of(packed)
    for row, (positions, _) in enumerate(masked_rows(WholeWordMasker(settings(tokenizer)), batch)):
        assert positions
        for word in spans(batch[2][row][: batch[1][row].sum()]):
            assert not positions & set(word) or set(word) <= positions


def test_replacement_split_is_80_10_10():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(995)]
    tokenizer = WordPieceTokenizer(vocabulary, lowercase=True)
    rng = np.random.default_rng(0)
    rows = [np.concatenate([[2], rng.integers(5, 1000, 48), [3]]) for _ in range(400)]
    packed = PackedSequences(
        np.concatenate(rows).astype(np.int32),
        np.ones(50 * 400, np.int8),
        np.arange(0, 50 * 401, 50).astype(np.int64),
    )
    batch = batch_of(packed)
    token_ids, positions, originals = (
        np.asarray(x) for x in WholeWordMasker(settings(tokenizer))(*batch)
    )
    selected = originals >= 0
    assert (selected.sum(axis=1) == math.ceil(0.15 * 48)).all()  # 15% of the words a row
    rows_index = np.nonzero(selected)[0]
    now = token_ids[rows_index, positions[selected]]
    was = originals[selected]
    masked, kept = np.mean(now == 4), np.mean(now == was)
    assert masked == pytest.approx(0.8, abs=0.025)
    assert kept == pytest.approx(0.1, abs=0.025)
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.025)


def test_special_tokens_and_padding_are_never_masked():
    tokenizer = chinese_tokenizer()
    unk, cls, sep, pad = tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    ((ids, _),) = tokenize_documents(["我学"], tokenizer, None)
    ids = ids.tolist()
    row = [cls, *ids, unk, sep, *ids, sep]
    token_ids = np.array([row + [pad] * 4, row[:5] + [pad] * 7], np.int32)
    padding_mask = (np.arange(12) < np.array([[8], [5]])).astype(np.int32)
    starts = np.ones_like(token_ids)
    masker = WholeWordMasker(settings(tokenizer, rate=0.99))
    for _ in range(20):
        for (positions, masked_ids), ids_row, mask_row in zip(
            masked_rows(masker, (token_ids, padding_mask, starts)),
            token_ids,
            padding_mask,
            strict=True,
        ):
            assert all(ids_row[p] not in (unk, cls, sep, pad) and mask_row[p] for p in positions)
            padded = mask_row == 0
            assert (masked_ids[padded] == 0).all()
            unchanged = [i for i in range(len(ids_row)) if i not in positions]
            assert (masked_ids[unchanged] == ids_row[unchanged]).all()


def test_held_out_masks_depend_only_on_the_seed():
    tokenizer = chinese_tokenizer()
    documents = tokenize_documents([CHINESE, "北京天气" * 4] * 20, tokenizer, ChineseWords())
    packed = pack_documents(documents, 32, tokenizer.cls_id, tokenizer.sep_id)
    first = mask_split(packed, settings(tokenizer), seed=3)
    again = mask_split(packed, settings(tokenizer), seed=3)
    other = mask_split(packed, settings(tokenizer), seed=4)
    assert np.array_equal(first.positions, again.positions)
    assert np.array_equal(first.token_ids, again.token_ids)
    assert not np.array_equal(first.positions, other.positions)
    assert len(first) == len(packed) and first.mask_splits[-1] == len(first.positions)
