"""ALBERT family: HF conversion from safetensors and .bin, HF-exact ids (SentencePiece and
vocab.txt), shared-layer parameter groups, rebuild. Fixtures: tools/make_tiny_hf_albert_xlmr.py."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.encoders.family_helpers import (
    FIXTURES,
    WEIGHT_FILES,
    as_lists,
    folder_with_only,
    reference,
)
from xtune.encoders import load_encoder
from xtune.encoders.adapter import EncoderLoadError
from xtune.encoders.albert import AlbertAdapter, albert_tokenizer
from xtune.encoders.bert import WordPieceTokenizer
from xtune.encoders.sentencepiece_tokenizer import SentencePieceTokenizer

VARIANTS = ("albert", "albert_vocab_txt")


def hf_ids(ref: dict[str, np.ndarray]) -> list[list[int]]:
    return tf.RaggedTensor.from_row_lengths(ref["ids"], ref["row_lengths"]).to_list()


@pytest.fixture(scope="module")
def adapters() -> dict[str, AlbertAdapter]:
    return {variant: AlbertAdapter.from_hf_folder(FIXTURES / variant) for variant in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("weights", WEIGHT_FILES)
def test_backbone_matches_transformers(variant, weights, tmp_path):
    adapter = AlbertAdapter.from_hf_folder(folder_with_only(variant, weights, tmp_path))
    ref = reference(variant)
    inputs = {name: ref[name] for name in adapter.input_names}
    outputs = adapter.features_model()(inputs)
    np.testing.assert_allclose(outputs["sequence_output"], ref["sequence_output"], atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"], ref["pooled_output"], atol=1e-4)
    assert len(outputs["hidden_states"]) == adapter.num_layers == 2
    for ours, theirs in zip(outputs["hidden_states"], ref["hidden_states"], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_token_ids_match_hugging_face(adapters, variant):
    """Every fixture string, literal `[CLS]`/`<s>` included (HF maps them to their ids)."""
    ref = reference(variant)
    ids = adapters[variant].tokenizer.tokenize(tf.constant(ref["strings"]))
    for text, ours, theirs in zip(ref["strings"], as_lists(ids), hf_ids(ref), strict=True):
        assert ours == theirs, text


@pytest.mark.parametrize("variant", VARIANTS)
def test_pair_packing_ids_match_hugging_face(adapters, variant):
    """`[CLS] a [SEP] b [SEP]` with the model's own [CLS]/[SEP] ids."""
    tokenizer = adapters[variant].tokenizer
    ref = reference(variant)
    first, second = as_lists(tokenizer.tokenize(tf.constant(ref["pair"])))
    packed = [tokenizer.cls_id, *first, tokenizer.sep_id, *second, tokenizer.sep_id]
    assert adapters[variant].packing.special_tokens(2) == 3
    assert packed == ref["pair_ids"].tolist()


def test_tokenizer_kinds_follow_the_folder(adapters):
    spiece = adapters["albert"].tokenizer
    assert isinstance(spiece, SentencePieceTokenizer)
    assert (spiece.cls_id, spiece.sep_id, spiece.pad_id, spiece.unk_id) == (2, 3, 0, 1)
    assert spiece.lowercase and spiece.strip_accents
    assert spiece.special_tokens == {"[CLS]": 2, "[SEP]": 3, "<pad>": 0, "<unk>": 1, "[MASK]": 4}
    assert isinstance(adapters["albert_vocab_txt"].tokenizer, WordPieceTokenizer)


def test_loads_through_the_hf_loader():
    adapter = load_encoder({"name": "hf", "path": str(FIXTURES / "albert")})
    assert isinstance(adapter, AlbertAdapter)
    assert adapter.source == f"hf:{FIXTURES / 'albert'}"


def test_sentencepiece_tokenizer_round_trips_and_runs_in_a_graph(adapters, tmp_path):
    tokenizer = adapters["albert"].tokenizer
    record = tokenizer.save(tmp_path)
    again = SentencePieceTokenizer.load(tmp_path, record)
    texts = tf.constant(["Café ``naïve'' 中文，", ""])
    graph = tf.function(again.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    assert graph(texts).to_list() == tokenizer.tokenize(texts).to_list()
    assert again.fingerprint() == tokenizer.fingerprint()


def test_sentencepiece_tokenizer_works_inside_a_saved_model(adapters, tmp_path):
    tokenizer = adapters["albert"].tokenizer
    module = tf.Module()
    module.tokenizer = tokenizer  # tracked: SentencePieceTokenizer is a tf.Module
    module.tokenize = tf.function(
        lambda texts: tokenizer.tokenize(texts).to_tensor(-1),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path / "saved"))
    texts = tf.constant(["Hello [CLS] naïve 中文，", ""])
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    expected = tokenizer.tokenize(texts).to_tensor(-1).numpy()
    np.testing.assert_array_equal(loaded.tokenize(texts).numpy(), expected)


def test_shared_layers_take_the_group_of_their_last_application():
    """4 applications of 2 groups: group 0 is layers 0-1, group 1 is layers 2-3."""
    adapter = AlbertAdapter.tiny_random(60, num_layers=4, num_groups=2)
    groups = {v.path: adapter.parameter_group(v.path) for v in adapter.backbone.weights}
    assert groups["group_0_inner_layer_0/self_attention_layer/query/kernel"] == "layer_1"
    assert groups["group_1_inner_layer_0/feedforward_output_dense/bias"] == "layer_3"
    assert groups["embedding_projection/kernel"] == "embeddings"
    assert groups["token_embedding/embeddings"] == "embeddings"
    assert groups["pooled_dense/kernel"] == "pooler"
    assert None not in groups.values()
    shared = AlbertAdapter.tiny_random(60, num_groups=1)
    assert shared.parameter_group("group_0_inner_layer_0/x") == "layer_1"


def test_hidden_states_are_every_application_of_the_shared_layer():
    adapter = AlbertAdapter.tiny_random(60, num_layers=3, num_groups=1)
    inputs = {
        "token_ids": np.array([[2, 7, 8, 3]]),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }
    features = adapter.features_model()(inputs)
    states = [np.asarray(state) for state in features["hidden_states"]]
    assert len(states) == 3
    assert not np.allclose(states[0], states[1])
    np.testing.assert_allclose(states[-1], features["sequence_output"], atol=1e-6)
    symbolic = {name: keras.Input((None,), dtype="int32", name=name) for name in inputs}
    assert set(adapter.features(symbolic)) == {
        "sequence_output",
        "pooled_output",
        "hidden_states",
        "padding_mask",
    }


def test_lora_layers_are_each_shared_block_once():
    adapter = AlbertAdapter.tiny_random(60, num_layers=4, num_groups=2)
    layers = adapter.lora_layers(["query", "value"])
    assert sorted(layer.name for layer in layers) == ["query", "query", "value", "value"]
    with pytest.raises(ValueError, match="nope match no layer"):
        adapter.lora_layers(["nope"])


def test_rebuild_restores_the_architecture(adapters):
    adapter = adapters["albert"]
    again = AlbertAdapter.rebuild(adapter.record(), adapter.tokenizer)
    again.backbone.set_weights(adapter.backbone.get_weights())
    ref = reference("albert")
    inputs = {name: ref[name] for name in adapter.input_names}
    np.testing.assert_allclose(
        again.features_model()(inputs)["sequence_output"], ref["sequence_output"], atol=1e-4
    )
    assert again.hidden_activation == adapter.hidden_activation == "gelu_approximate"
    assert adapters["albert_vocab_txt"].hidden_activation == "gelu_exact"
    assert adapter.word_embeddings.shape == (adapter.tokenizer.vocabulary_size, 16)
    assert adapter.max_positions == 128


def test_a_bert_tokenizer_class_picks_vocab_txt_over_spiece_model(tmp_path):
    folder = folder_with_only("albert_vocab_txt", "model.safetensors", tmp_path)
    shutil.copy(FIXTURES / "albert" / "spiece.model", folder)
    assert isinstance(albert_tokenizer(folder), WordPieceTokenizer)
    (folder / "tokenizer_config.json").write_text("{}")
    assert isinstance(albert_tokenizer(folder), SentencePieceTokenizer)


def test_folder_without_a_vocabulary_is_refused(tmp_path):
    folder = folder_with_only("albert", "model.safetensors", tmp_path)
    (folder / "spiece.model").unlink()
    with pytest.raises(EncoderLoadError, match="needs a vocabulary: spiece.model or vocab.txt"):
        AlbertAdapter.from_hf_folder(folder)


def test_weights_that_do_not_fit_the_config_name_the_tensor(tmp_path):
    folder = folder_with_only("albert", "model.safetensors", tmp_path)
    config = (
        (folder / "config.json").read_text().replace('"embedding_size": 16', '"embedding_size": 8')
    )
    (folder / "config.json").write_text(config)
    with pytest.raises(EncoderLoadError, match="embeddings.word_embeddings.weight' has shape"):
        AlbertAdapter.from_hf_folder(folder)
