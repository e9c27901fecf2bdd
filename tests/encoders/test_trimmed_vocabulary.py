"""Vocabulary trimming: the trimmed encoder computes what the full one does on the corpus."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from xtune.encoders import FAMILIES
from xtune.encoders.encoder import rebuild_encoder, write_encoder_files
from xtune.encoders.trimmed_vocabulary import TrimmedTokenizer, trim_encoder, used_token_ids
from xtune.model import encoder_features_model

# BERT, byte-level BPE, factorised embeddings, SentencePiece without segment ids.
TINY_FAMILIES = ["bert", "roberta", "albert", "multilingual_e5"]
CORPUS = ["hello world", "the cat sat", "abc def"]


def packed(encoder, texts) -> dict[str, tf.Tensor]:
    from xtune.data.tokenization import TextEncoder

    text_encoder = TextEncoder(encoder.tokenizer, encoder.packing, 16)
    return text_encoder.pad(text_encoder(tf.constant(texts)), 16)


def sequence_output(encoder, inputs) -> np.ndarray:
    outputs = encoder_features_model(encoder)(inputs)
    return np.asarray(outputs["sequence_output"])


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_trimmed_encoder_equals_full_on_the_corpus(family):
    full = FAMILIES.get(family).tiny_random(200)
    inputs = packed(full, CORPUS)
    kept = used_token_ids([np.asarray(inputs["token_ids"])])
    trimmed = trim_encoder(full, kept)
    assert trimmed.tokenizer.vocabulary_size < full.tokenizer.vocabulary_size
    assert tuple(trimmed.word_embeddings.shape) == (
        trimmed.tokenizer.vocabulary_size,
        full.word_embeddings.shape[1],
    )
    trimmed_inputs = packed(trimmed, CORPUS)
    np.testing.assert_array_equal(
        np.asarray(trimmed_inputs["token_ids"]),
        trimmed.tokenizer.map_ids(np.asarray(inputs["token_ids"])),
    )
    np.testing.assert_allclose(
        sequence_output(trimmed, trimmed_inputs), sequence_output(full, inputs), atol=1e-5
    )


def test_pieces_outside_the_corpus_become_unknown():
    full = FAMILIES.get("bert").tiny_random(200)
    kept = used_token_ids(full.tokenizer.tokenize(tf.constant(["w1 a b"])))
    tokenizer = TrimmedTokenizer(full.tokenizer, kept)
    ids = tokenizer.tokenize(tf.constant(["w1 a b w2 c"])).to_list()[0]
    assert len(ids) == 5 and tokenizer.unk_id not in ids[:3]
    assert ids[3:] == [tokenizer.unk_id] * 2
    # The specials are always kept, and are the first rows in id order.
    specials = {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.unk_id}
    assert len(specials) == 4 and max(specials) < len(tokenizer.kept_ids)


def test_kept_ids_out_of_range_are_refused():
    full = FAMILIES.get("bert").tiny_random(50)
    with pytest.raises(ValueError, match=r"kept token ids must lie in \[0, 50\)"):
        TrimmedTokenizer(full.tokenizer, [3, 99])


@pytest.mark.parametrize("family", ["bert", "multilingual_e5"])
def test_trimmed_encoder_round_trips_through_its_record(family, tmp_path):
    full = FAMILIES.get(family).tiny_random(200)
    kept = used_token_ids([np.asarray(packed(full, CORPUS)["token_ids"])])
    trimmed = trim_encoder(full, kept)
    rebuilt = rebuild_encoder(write_encoder_files(trimmed, tmp_path), tmp_path)
    assert isinstance(rebuilt.tokenizer, TrimmedTokenizer)
    np.testing.assert_array_equal(rebuilt.tokenizer.kept_ids, trimmed.tokenizer.kept_ids)
    texts = tf.constant(CORPUS + ["unseen zzz"])
    expected = trimmed.tokenizer.tokenize(texts).to_list()
    assert rebuilt.tokenizer.tokenize(texts).to_list() == expected
    assert tuple(rebuilt.word_embeddings.shape) == tuple(trimmed.word_embeddings.shape)


def test_fresh_tokenizer_survives_clear_session():
    """The grid clears the Keras session between runs, which frees a SentencePiece
    tokenizer's model resource; the data cache tokenizes with a fresh copy."""
    import keras

    from xtune.data.tokenization import TextEncoder
    from xtune.encoders.encoder import fresh_tokenizer

    tokenizer = FAMILIES.get("multilingual_e5").tiny_random(200).tokenizer
    expected = tokenizer.tokenize(tf.constant(CORPUS)).to_list()
    keras.backend.clear_session()
    with pytest.raises(tf.errors.NotFoundError):  # why the copy is needed
        TextEncoder(tokenizer, FAMILIES.get("multilingual_e5").packing, 16)(tf.constant(CORPUS))
    copy = fresh_tokenizer(tokenizer)
    assert copy.tokenize(tf.constant(CORPUS)).to_list() == expected
