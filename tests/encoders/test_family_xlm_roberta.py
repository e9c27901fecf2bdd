"""XLM-R family: HF conversion from safetensors and .bin, fairseq-id SentencePiece equal to HF's
tokenizer, `<s> a </s></s> b </s>`, rebuild. Fixtures: tools/make_tiny_hf_albert_xlmr.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.encoders.family_helpers import FIXTURES, WEIGHT_FILES, folder_with_only, reference
from xtune.encoders import load_encoder
from xtune.encoders.adapter import EncoderLoadError
from xtune.encoders.sentencepiece_tokenizer import SentencePieceTokenizer
from xtune.encoders.xlm_roberta import XlmRobertaAdapter

FOLDER = FIXTURES / "xlm_roberta"


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return reference("xlm_roberta")


@pytest.fixture(scope="module")
def adapter() -> XlmRobertaAdapter:
    return XlmRobertaAdapter.from_hf_folder(FOLDER)


@pytest.mark.parametrize("weights", WEIGHT_FILES)
def test_backbone_matches_transformers(weights, ref, tmp_path):
    """Real tokens only: HF gives padding the padding position, keras-hub its index."""
    adapter = XlmRobertaAdapter.from_hf_folder(folder_with_only("xlm_roberta", weights, tmp_path))
    assert adapter.input_names == ("token_ids", "padding_mask")
    outputs = adapter.features_model()({name: ref[name] for name in adapter.input_names})
    real = ref["padding_mask"].astype(bool)
    sequence = np.asarray(outputs["sequence_output"])
    np.testing.assert_allclose(sequence[real], ref["sequence_output"][real], atol=1e-4)
    assert len(outputs["hidden_states"]) == adapter.num_layers == 2
    for ours, theirs in zip(outputs["hidden_states"], ref["hidden_states"], strict=True):
        np.testing.assert_allclose(np.asarray(ours)[real], theirs[real], atol=1e-4)
    assert "pooled_output" not in outputs


def test_token_ids_match_hugging_face(adapter, ref):
    hf = tf.RaggedTensor.from_row_lengths(ref["ids"], ref["row_lengths"]).to_list()
    ours = adapter.tokenizer.tokenize(tf.constant(ref["strings"])).to_list()
    for text, mine, theirs in zip(ref["strings"], ours, hf, strict=True):
        assert mine == theirs, text


def test_pair_packing_ids_match_hugging_face(adapter, ref):
    """`<s> a </s></s> b </s>`: 4 special tokens, no segment ids."""
    tokenizer = adapter.tokenizer
    first, second = tokenizer.tokenize(tf.constant(ref["pair"])).to_list()
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    packed = [cls_id, *first, sep_id, sep_id, *second, sep_id]
    assert (cls_id, sep_id, tokenizer.pad_id, tokenizer.unk_id) == (0, 2, 1, 3)
    assert adapter.packing.special_tokens(2) == 4 and not adapter.packing.segment_ids
    assert packed == ref["pair_ids"].tolist()


def test_unknown_pieces_get_the_fairseq_unknown_id(adapter):
    ids = adapter.tokenizer.tokenize(tf.constant(["∮"])).to_list()[0]
    assert adapter.tokenizer.unk_id in ids
    assert 0 not in ids  # SentencePiece's own <unk> id is fairseq's <s>


def test_literal_special_tokens_are_their_ids(adapter):
    ids = adapter.tokenizer.tokenize(tf.constant(["a<s>b <mask>", "<unk></s>"])).to_list()
    assert ids[0][1] == 0 and ids[0][-1] == 161 and ids[1] == [3, 2]


def test_a_tokenizer_json_alone_gives_the_same_ids(ref, tmp_path):
    """Without sentencepiece.bpe.model the SentencePiece model is built from tokenizer.json."""
    folder = folder_with_only("xlm_roberta", "model.safetensors", tmp_path)
    (folder / "sentencepiece.bpe.model").unlink()
    tokenizer = XlmRobertaAdapter.from_hf_folder(folder).tokenizer
    hf = tf.RaggedTensor.from_row_lengths(ref["ids"], ref["row_lengths"]).to_list()
    assert tokenizer.tokenize(tf.constant(ref["strings"])).to_list() == hf


def test_loads_through_the_hf_loader():
    loaded = load_encoder({"name": "hf", "path": str(FOLDER)})
    assert isinstance(loaded, XlmRobertaAdapter)


def test_positions_and_vocabulary(adapter):
    assert adapter.max_positions == 128  # max_position_embeddings 130 - offset 2
    assert adapter.tokenizer.vocabulary_size == adapter.word_embeddings.shape[0] == 162


def test_parameter_groups_cover_every_weight(adapter):
    groups = {v.path: adapter.parameter_group(v.path) for v in adapter.backbone.weights}
    assert groups["embeddings/token_embedding/embeddings"] == "embeddings"
    assert groups["embeddings/position_embedding/embeddings"] == "embeddings"
    assert groups["transformer_layer_1/feedforward_output_dense/kernel"] == "layer_1"
    assert None not in groups.values()
    assert {layer.name for layer in adapter.lora_layers(["query", "value"])} == {"query", "value"}


def test_rebuild_and_tokenizer_round_trip(adapter, ref, tmp_path):
    record = adapter.tokenizer.save(tmp_path)
    tokenizer = SentencePieceTokenizer.load(tmp_path, record)
    again = XlmRobertaAdapter.rebuild(adapter.record(), tokenizer)
    again.backbone.set_weights(adapter.backbone.get_weights())
    outputs = again.features_model()({name: ref[name] for name in again.input_names})
    real = ref["padding_mask"].astype(bool)
    sequence = np.asarray(outputs["sequence_output"])
    np.testing.assert_allclose(sequence[real], ref["sequence_output"][real], atol=1e-4)
    graph = tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    texts = tf.constant(ref["strings"][:4])
    assert graph(texts).to_list() == adapter.tokenizer.tokenize(texts).to_list()


def test_tiny_random_model_runs():
    tiny = XlmRobertaAdapter.tiny_random(80)
    assert tiny.tokenizer.vocabulary_size == 80
    ids = tiny.tokenizer.tokenize(tf.constant(["hello w3 world", ""])).to_list()
    assert ids[1] == [] and max(ids[0]) < 80 and min(ids[0]) > 3
    symbolic = {name: keras.Input((None,), dtype="int32", name=name) for name in tiny.input_names}
    assert set(tiny.features(symbolic)) == {"sequence_output", "hidden_states", "padding_mask"}


def test_folder_without_a_vocabulary_is_refused(tmp_path):
    folder = folder_with_only("xlm_roberta", "model.safetensors", tmp_path)
    (folder / "sentencepiece.bpe.model").unlink()
    (folder / "tokenizer.json").unlink()
    with pytest.raises(EncoderLoadError, match="needs sentencepiece.bpe.model or tokenizer.json"):
        XlmRobertaAdapter.from_hf_folder(folder)
