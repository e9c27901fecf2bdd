"""A Hugging Face BERT folder with XLM-R's SentencePiece vocabulary (multilingual MiniLM / e5):
`encoder: {name: hf}` reads BERT's weights and XLM-R's tokenizer and packing.

The folder is put together from two fixtures made with transformers: the tiny BERT's config
and weights (vocabulary 360 rows) and the tiny XLM-R's tokenizer files (162 ids), without
vocab.txt.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.encoders.family_helpers import FIXTURES, as_lists, reference
from xtune.encoders import load_encoder
from xtune.encoders.multilingual_e5 import MultilingualE5Adapter
from xtune.model import encoder_features_model

TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module", params=["model.safetensors", "pytorch_model.bin"])
def folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert_xlmr")
    shutil.copy(FIXTURES / "bert" / "config.json", folder)
    shutil.copy(FIXTURES / "bert" / request.param, folder)
    for name in TOKENIZER_FILES:
        shutil.copy(FIXTURES / "xlm_roberta" / name, folder)
    return folder


def test_the_hf_loader_picks_bert_with_xlm_roberta_ids_and_packing(folder):
    encoder = load_encoder({"name": "hf", "path": str(folder)})
    assert isinstance(encoder, MultilingualE5Adapter)
    assert encoder.packing.style == "roberta" and not encoder.packing.segment_ids
    expected = reference("xlm_roberta")
    strings = [str(s) for s in expected["strings"]]
    ids = as_lists(encoder.tokenizer.tokenize(tf.constant(strings)))
    splits = np.cumsum(expected["row_lengths"])[:-1]
    assert ids == [list(row) for row in np.split(expected["ids"], splits)]


def test_weights_are_bert_s(folder):
    """Same weights as the BERT family reads from the BERT fixture (itself checked against
    transformers within 1e-4): the sequence output on XLM-R ids with token type 0 agrees."""
    encoder = load_encoder({"name": "hf", "path": str(folder)})
    bert = load_encoder({"name": "hf", "path": str(FIXTURES / "bert")})
    token_ids = np.array([[0, 35, 61, 7, 2, 1, 1]], dtype=np.int32)
    mask = token_ids != 1
    ours = encoder_features_model(encoder)({"token_ids": token_ids, "padding_mask": mask})
    theirs = encoder_features_model(bert)(
        {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": mask}
    )
    np.testing.assert_allclose(
        np.asarray(ours["sequence_output"]), np.asarray(theirs["sequence_output"]), atol=1e-6
    )
    assert "pooled_output" not in ours
