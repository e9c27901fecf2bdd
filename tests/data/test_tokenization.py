"""Tokenizer ids against Hugging Face's BertTokenizer, truncation strategies and packing."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FIXTURES, TINY_VOCAB
from xtune.data.tokenization import TextEncoder
from xtune.encoders.adapter import Packing
from xtune.encoders.bert import BertAdapter, WordPieceTokenizer

BERT = BertAdapter.packing
ROBERTA = Packing("roberta", segment_ids=False)


def wordpiece_encoder(vocabulary, lowercase, max_length, *args, packing=BERT):
    return TextEncoder(WordPieceTokenizer(vocabulary, lowercase), packing, max_length, *args)


def minilm_vocabulary():
    from xtune.encoders.sources import minilm_folder

    return (minilm_folder() / "vocab.txt").read_text(encoding="utf-8").splitlines()


def reference_cases():
    return json.loads((FIXTURES / "tokenizer_reference.json").read_text(encoding="utf-8"))["cases"]


def test_ids_equal_hugging_face_bert_tokenizer():
    """90 English/Chinese cases incl. full-width punctuation, accents, odd whitespace, pairs."""
    vocabularies = {
        "minilm": minilm_vocabulary(),
        "bert-base-chinese": TINY_VOCAB.read_text(encoding="utf-8").splitlines(),
    }
    encoders = {}
    mismatches = []
    for case in reference_cases():
        key = (case["vocab"], case["do_lower_case"])
        if key not in encoders:
            encoders[key] = wordpiece_encoder(vocabularies[key[0]], key[1], 512)
        encoder = encoders[key]
        pair = None if case["text_pair"] is None else tf.constant([case["text_pair"]])
        ids = encoder(tf.constant([case["text"]]), pair)["token_ids"].to_list()[0]
        if ids != case["ids"]:
            mismatches.append(case["text"])
    assert len(reference_cases()) >= 90
    assert mismatches == []


def words_encoder(max_length, truncation="head", head_tokens=2, packing=BERT):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(40)]
    encoder = wordpiece_encoder(
        vocabulary, True, max_length, truncation, head_tokens, packing=packing
    )
    return encoder, vocabulary


def words(n, prefix="w"):
    return " ".join(f"{prefix}{i}" for i in range(n))


@pytest.mark.parametrize(
    "truncation, expected",
    [
        ("head", ["w0", "w1", "w2", "w3", "w4", "w5"]),
        ("tail", ["w14", "w15", "w16", "w17", "w18", "w19"]),
        ("head_tail", ["w0", "w1", "w16", "w17", "w18", "w19"]),
    ],
)
def test_truncation_strategies(truncation, expected):
    encoder, vocabulary = words_encoder(8, truncation, head_tokens=2)
    ids = encoder(tf.constant([words(20), words(3)]))["token_ids"].to_list()
    assert [vocabulary[i] for i in ids[0]] == ["[CLS]", *expected, "[SEP]"]
    assert [vocabulary[i] for i in ids[1]] == ["[CLS]", "w0", "w1", "w2", "[SEP]"]


def longest_first(a, b, total):
    """Hugging Face's loop: drop one token from the longer segment (the second on ties)."""
    a, b = list(a), list(b)
    while len(a) + len(b) > total:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def test_pair_budgets_match_longest_first_and_segments_are_marked():
    encoder, vocabulary = words_encoder(12)
    for la in range(0, 14, 3):
        for lb in range(0, 14, 2):
            texts = tf.constant([words(la) or "w0"])
            pairs = tf.constant([words(lb) or "w0"])
            out = encoder(texts, pairs)
            ids, segments = out["token_ids"].to_list()[0], out["segment_ids"].to_list()[0]
            a, b = longest_first(range(max(la, 1)), range(max(lb, 1)), 9)
            assert len(ids) == len(a) + len(b) + 3 <= 12
            assert segments == [0] * (len(a) + 2) + [1] * (len(b) + 1)


def test_padding_mask_and_max_length_bound():
    encoder, _ = words_encoder(10)
    dense = encoder.pad(encoder(tf.constant([words(30), words(2)])), length=10)
    np.testing.assert_array_equal(dense["padding_mask"].numpy().sum(1), [10, 4])
    assert dense["token_ids"].shape == (2, 10)
    assert dense["token_ids"].numpy()[1, 4:].tolist() == [0] * 6


def test_roberta_packing_budgets_and_no_segment_ids():
    """`<s> a </s></s> b </s>`: 4 special tokens for a pair, 2 for one text; no segment ids."""
    encoder, vocabulary = words_encoder(12, packing=ROBERTA)
    single = encoder(tf.constant([words(20)]))
    assert "segment_ids" not in single
    assert [vocabulary[i] for i in single["token_ids"].to_list()[0]] == [
        "[CLS]",
        *words(10).split(),
        "[SEP]",
    ]
    out = encoder(tf.constant([words(10)]), tf.constant([words(3, "w")]))
    ids = [vocabulary[i] for i in out["token_ids"].to_list()[0]]
    a, b = longest_first(range(10), range(3), 8)
    assert ids == ["[CLS]", *[f"w{i}" for i in a], "[SEP]", "[SEP]", *[f"w{i}" for i in b], "[SEP]"]
    dense = encoder.pad(out, length=14)
    assert set(dense) == {"token_ids", "padding_mask"} == set(encoder.input_names)
    assert dense["padding_mask"].numpy().sum() == 12


def test_roberta_style_with_segment_ids_marks_every_token_zero():
    encoder, _ = words_encoder(12, packing=Packing("roberta", segment_ids=True))
    out = encoder(tf.constant([words(3)]), tf.constant([words(2)]))
    assert out["segment_ids"].to_list()[0] == [0] * (3 + 2 + 4)


def test_padding_uses_the_tokenizer_pad_id():
    vocabulary = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "w0"]
    encoder = wordpiece_encoder(vocabulary, True, 8)
    dense = encoder.pad(encoder(tf.constant(["w0", "w0 w0 w0"])))
    assert dense["token_ids"].numpy()[0].tolist() == [2, 4, 3, 1, 1]


def test_literal_special_tokens_and_line_separators_as_hugging_face():
    """BertTokenizer keeps a literal `[CLS]` whole (lower-casing spares it, not `[cls]`) and
    splits at U+2028 / U+2029 (Python's `str.split`)."""
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "[", "]", "cl", "##s"]
    tokenizer = WordPieceTokenizer(vocabulary, lowercase=True)
    texts = tf.constant(["A\u2028B\u2029a", "a[CLS]b [cls] [MASK]"])
    ids = tf.function(tokenizer.tokenize)(texts).to_list()
    assert [[vocabulary[i] for i in row] for row in ids] == [
        ["a", "b", "a"],
        ["a", "[CLS]", "b", "[", "cl", "##s", "]", "[MASK]"],
    ]


def test_text_encoders_with_the_same_identity_share_one_traced_graph():
    """Tracing costs seconds: a second `TextEncoder` over the same vocabulary and settings
    encodes through the first one's traced functions, with the same ids; other settings,
    another vocabulary or `forget_traced_encoders` (after `clear_session`) trace anew."""
    from xtune.data.tokenization import forget_traced_encoders, traced_encoder

    vocabulary = TINY_VOCAB.read_text(encoding="utf-8").splitlines()
    forget_traced_encoders()
    first, second = (wordpiece_encoder(vocabulary, True, 12) for _ in range(2))
    texts = tf.constant(["港口天气", "学习一二三四五六七八九十"])
    ids = first(texts)["token_ids"].to_list()
    assert traced_encoder(second) is first
    assert second(texts)["token_ids"].to_list() == ids
    assert first.encode_texts.experimental_get_tracing_count() == 1
    assert second.__dict__.get("encode_texts") is None  # never traced its own
    shorter = wordpiece_encoder(vocabulary, True, 6)
    other_vocabulary = wordpiece_encoder([*vocabulary, "新词"], True, 12)
    assert traced_encoder(shorter) is shorter and traced_encoder(other_vocabulary) is not first
    assert max(len(row) for row in shorter(texts)["token_ids"].to_list()) == 6
    forget_traced_encoders()
    assert traced_encoder(second) is second
