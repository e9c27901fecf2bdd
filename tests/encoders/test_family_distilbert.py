"""DistilBERT family: HF conversion from safetensors and .bin, HF-exact WordPiece ids,
packing without segment ids, parameter groups, rebuild. Fixtures: tools/make_tiny_hf_models.py."""

from __future__ import annotations

import json
import shutil

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
from xtune.encoders.bert import WordPieceTokenizer
from xtune.encoders.distilbert import DistilBertAdapter

FIXTURE = FIXTURES / "distilbert"


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return reference("distilbert")


@pytest.fixture(scope="module")
def adapter() -> DistilBertAdapter:
    return DistilBertAdapter.from_hf_folder(FIXTURE)


@pytest.mark.parametrize("weights", WEIGHT_FILES)
def test_backbone_matches_transformers(weights, ref, tmp_path):
    adapter = DistilBertAdapter.from_hf_folder(folder_with_only("distilbert", weights, tmp_path))
    assert adapter.input_names == ("token_ids", "padding_mask")
    inputs = {name: ref[name] for name in adapter.input_names}
    outputs = adapter.features_model()(inputs)
    # DistilBERT's positions start at 0 as keras-hub's: padded rows match everywhere
    np.testing.assert_allclose(outputs["sequence_output"], ref["sequence_output"], atol=1e-4)
    assert "pooled_output" not in outputs and "pooled_output" not in ref
    assert len(outputs["hidden_states"]) == adapter.num_layers == 2
    for ours, theirs in zip(outputs["hidden_states"], ref["hidden_states"], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_token_ids_match_hugging_face(adapter, ref):
    """English, Chinese, full-width punctuation, accents (stripped: uncased), emoji, empty,
    whitespace runs, U+2028 and control characters, a very long string."""
    assert isinstance(adapter.tokenizer, WordPieceTokenizer) and adapter.tokenizer.lowercase
    hf = tf.RaggedTensor.from_row_lengths(ref["ids"], ref["row_lengths"]).to_list()
    ids = as_lists(adapter.tokenizer.tokenize(tf.constant(ref["strings"])))
    assert max(len(row) for row in hf) > 1000
    for text, ours, theirs in zip(ref["strings"], ids, hf, strict=True):
        assert ours == theirs, text


def test_pair_packing_ids_match_hugging_face(adapter, ref):
    """`[CLS] a [SEP] b [SEP]`, and no segment ids: DistilBERT has no token types."""
    tokenizer = adapter.tokenizer
    first, second = as_lists(tokenizer.tokenize(tf.constant(ref["pair"])))
    packed = [tokenizer.cls_id, *first, tokenizer.sep_id, *second, tokenizer.sep_id]
    assert adapter.packing.special_tokens(2) == 3 and not adapter.packing.segment_ids
    assert packed == ref["pair_ids"].tolist()


def test_rebuild_gives_the_same_architecture(adapter, ref):
    record = json.loads(json.dumps(adapter.record()))
    again = DistilBertAdapter.rebuild(record, adapter.tokenizer)
    again.features_model().set_weights(adapter.features_model().get_weights())
    inputs = {name: ref[name] for name in adapter.input_names}
    ours, theirs = adapter.features_model()(inputs), again.features_model()(inputs)
    np.testing.assert_allclose(ours["sequence_output"], theirs["sequence_output"], atol=1e-6)
    assert again.max_positions == adapter.max_positions == 128


def test_parameter_groups_cover_every_weight(adapter):
    groups = {v.path: adapter.parameter_group(v.path) for v in adapter.features_model().weights}
    assert None not in groups.values()
    assert groups["token_and_position_embedding/token_embedding/embeddings"] == "embeddings"
    assert groups["embeddings_layer_norm/beta"] == "embeddings"
    assert groups["transformer_layer_1/feedforward_output_dense/kernel"] == "layer_1"
    assert adapter.word_embeddings.path == "token_and_position_embedding/token_embedding/embeddings"
    names = sorted(layer.name for layer in adapter.lora_layers(["query", "value"]))
    assert names == ["query", "query", "value", "value"]


def test_loads_through_the_hf_loader():
    adapter = load_encoder({"name": "hf", "path": str(FIXTURE)})
    assert isinstance(adapter, DistilBertAdapter)
    assert adapter.source == f"hf:{FIXTURE}"


def test_a_task_model_checkpoint_and_a_bad_config_are_handled(adapter, ref, tmp_path):
    """`DistilBertForSequenceClassification` saves `distilbert.`-prefixed tensors."""
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "distilbert"
    shutil.copytree(FIXTURE, folder)
    (folder / "pytorch_model.bin").unlink()
    weights = load_file(str(folder / "model.safetensors"))
    renamed = {f"distilbert.{k}": v for k, v in weights.items()}
    renamed["classifier.weight"] = np.zeros((2, 32), np.float32)
    save_file(renamed, str(folder / "model.safetensors"))
    again = DistilBertAdapter.from_hf_folder(folder)
    np.testing.assert_array_equal(again.word_embeddings.numpy(), adapter.word_embeddings.numpy())

    config = json.loads((FIXTURE / "config.json").read_text())
    del config["n_layers"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderLoadError, match="config needs 'n_layers'"):
        DistilBertAdapter.from_hf_folder(folder)
