"""The BERT family from a Hugging Face folder: safetensors and .bin (no torch) both match
transformers' BertModel; WordPiece ids match BertTokenizer (fixture: tools/make_tiny_hf_bert.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FIXTURES
from xtune.data.tokenization import TextEncoder
from xtune.encoders import load_encoder
from xtune.encoders.bert import BertAdapter
from xtune.model import encoder_features_model

FOLDER = FIXTURES / "hf_tiny" / "bert"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    with np.load(FOLDER / "reference.npz") as stored:
        return dict(stored)


def bin_only_folder(tmp_path):
    """The fixture without model.safetensors: the weights come from pytorch_model.bin."""
    folder = tmp_path / "bert_bin"
    folder.mkdir()
    for path in FOLDER.iterdir():
        if path.name != "model.safetensors":
            (folder / path.name).symlink_to(path)
    return folder


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_backbone_matches_transformers(weights, reference, tmp_path):
    folder = FOLDER if weights == "safetensors" else bin_only_folder(tmp_path)
    encoder = load_encoder({"name": "hf", "path": str(folder)})
    assert isinstance(encoder, BertAdapter) and encoder.hidden_activation == "gelu_exact"
    inputs = {name: reference[name] for name in encoder.input_names}
    outputs = encoder_features_model(encoder)(inputs)
    real = reference["padding_mask"][..., None].astype(bool)  # padded positions are arbitrary
    for layer, states in enumerate(outputs["hidden_states"]):
        difference = np.abs(np.asarray(states) - reference["hidden_states"][layer])
        assert np.where(real, difference, 0).max() < TOLERANCE, layer
    difference = np.abs(np.asarray(outputs["sequence_output"]) - reference["sequence_output"])
    assert np.where(real, difference, 0).max() < TOLERANCE
    pooled = np.asarray(outputs["pooled_output"]) - reference["pooled_output"]
    assert np.abs(pooled).max() < TOLERANCE


def test_ids_match_bert_tokenizer(reference):
    encoder = load_encoder({"name": "hf", "path": str(FOLDER)})
    strings = [str(s) for s in reference["strings"]]
    ids = tf.function(encoder.tokenizer.tokenize)(tf.constant(strings))
    expected = tf.RaggedTensor.from_row_lengths(reference["ids"], reference["row_lengths"])
    assert ids.to_list() == expected.to_list()
    text_encoder = TextEncoder(encoder.tokenizer, encoder.packing, 128)
    pair = [str(s) for s in reference["pair"]]
    packed = text_encoder(tf.constant(pair[:1]), tf.constant(pair[1:]))
    assert packed["token_ids"].to_list()[0] == reference["pair_ids"].tolist()
