"""Tokenizer ids against Hugging Face's BertTokenizer, truncation strategies and packing."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FIXTURES, TINY_VOCAB
from xtune.data.tokenization import TextEncoder


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
            encoders[key] = TextEncoder(vocabularies[key[0]], key[1], 512)
        encoder = encoders[key]
        pair = None if case["text_pair"] is None else tf.constant([case["text_pair"]])
        ids = encoder(tf.constant([case["text"]]), pair)["token_ids"].to_list()[0]
        if ids != case["ids"]:
            mismatches.append(case["text"])
    assert len(reference_cases()) >= 90
    assert mismatches == []


def words_encoder(max_length, truncation="head", head_tokens=2):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(40)]
    return TextEncoder(vocabulary, True, max_length, truncation, head_tokens), vocabulary


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
