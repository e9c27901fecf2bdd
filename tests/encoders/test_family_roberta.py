"""RoBERTa family: HF conversion from safetensors and .bin (position offset, folded token
type, pooler), HF-exact byte-level BPE ids, packing, rebuild. Fixtures:
tools/make_tiny_hf_models.py."""

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
from xtune.encoders.roberta import ByteLevelBPETokenizer, RobertaAdapter

FIXTURE = FIXTURES / "roberta"


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return reference("roberta")


@pytest.fixture(scope="module")
def adapter() -> RobertaAdapter:
    return RobertaAdapter.from_hf_folder(FIXTURE)


def assert_close_where_real(ours, theirs, mask):
    """Padded positions differ by design (HF gives them position `padding_idx`); heads mask
    them, so only real tokens are compared."""
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(ours)[real], theirs[real], atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHT_FILES)
def test_backbone_matches_transformers(weights, ref, tmp_path):
    adapter = RobertaAdapter.from_hf_folder(folder_with_only("roberta", weights, tmp_path))
    assert adapter.input_names == ("token_ids", "padding_mask")
    inputs = {name: ref[name] for name in adapter.input_names}
    outputs = adapter.features_model()(inputs)
    mask = ref["padding_mask"]
    assert_close_where_real(outputs["sequence_output"], ref["sequence_output"], mask)
    np.testing.assert_allclose(outputs["pooled_output"], ref["pooled_output"], atol=1e-4)
    assert len(outputs["hidden_states"]) == adapter.num_layers == 2
    for ours, theirs in zip(outputs["hidden_states"], ref["hidden_states"], strict=True):
        assert_close_where_real(ours, theirs, mask)


def test_positions_and_epsilon_follow_the_config(adapter):
    config = json.loads((FIXTURE / "config.json").read_text())
    assert adapter.max_positions == config["max_position_embeddings"] - 2
    assert adapter.layer_norm_epsilon == config["layer_norm_eps"]
    assert adapter.backbone.get_layer("embeddings_layer_norm").epsilon == config["layer_norm_eps"]


def test_token_ids_match_hugging_face(adapter, ref):
    """English, Chinese, full-width punctuation, accents, emoji, empty, whitespace runs,
    literal special tokens and a very long string."""
    hf = tf.RaggedTensor.from_row_lengths(ref["ids"], ref["row_lengths"]).to_list()
    ids = adapter.tokenizer.tokenize(tf.constant(ref["strings"]))
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32  # eagerly too
    assert max(len(row) for row in hf) > 1000
    for text, ours, theirs in zip(ref["strings"], as_lists(ids), hf, strict=True):
        assert ours == theirs, text


def test_pair_packing_ids_match_hugging_face(adapter, ref):
    """`<s> a </s></s> b </s>` with the model's own ids."""
    tokenizer = adapter.tokenizer
    first, second = as_lists(tokenizer.tokenize(tf.constant(ref["pair"])))
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    packed = [cls, *first, sep, sep, *second, sep]
    assert adapter.packing.special_tokens(2) == 4
    assert packed == ref["pair_ids"].tolist()
    assert (tokenizer.cls_id, tokenizer.pad_id, tokenizer.sep_id, tokenizer.unk_id) == (0, 1, 2, 3)


def test_tokenizer_round_trips_through_its_files(adapter, tmp_path):
    """The loaded tokenizer gives the same ids. Inside a SavedModel (a tracked tf.Module):
    tests/encoders/test_families_end_to_end.py exports a run of this fixture and compares
    the served ids on such texts with the run's tokenizer's."""
    tokenizer = adapter.tokenizer
    record = json.loads(json.dumps(tokenizer.save(tmp_path)))
    again = ByteLevelBPETokenizer.load(tmp_path, record)
    assert again.fingerprint() == tokenizer.fingerprint()
    texts = tf.constant(["Café naïve 中文，🤖 <s>", "", "  two  spaces "])
    expected = as_lists(tokenizer.tokenize(texts))
    assert as_lists(again.tokenize(texts)) == expected
    assert expected[0][-1] == tokenizer.cls_id and expected[1] == []


def test_bpe_is_read_from_tokenizer_json_when_vocab_json_is_missing(adapter, tmp_path):
    folder = tmp_path / "roberta"
    shutil.copytree(FIXTURE, folder)
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    tokenizer = ByteLevelBPETokenizer.from_hf_folder(folder)
    assert dict(tokenizer.vocabulary) == dict(adapter.tokenizer.vocabulary)
    assert tokenizer.merges == adapter.tokenizer.merges and len(tokenizer.merges) > 100


def test_rebuild_gives_the_same_architecture(adapter, ref):
    record = json.loads(json.dumps(adapter.record()))
    again = RobertaAdapter.rebuild(record, adapter.tokenizer)
    again.features_model().set_weights(adapter.features_model().get_weights())
    inputs = {name: ref[name] for name in adapter.input_names}
    ours, theirs = adapter.features_model()(inputs), again.features_model()(inputs)
    np.testing.assert_allclose(ours["pooled_output"], theirs["pooled_output"], atol=1e-6)
    assert again.layer_norm_epsilon == adapter.layer_norm_epsilon


def test_parameter_groups_cover_every_weight(adapter):
    groups = {v.path: adapter.parameter_group(v.path) for v in adapter.features_model().weights}
    assert None not in groups.values()
    assert groups["embeddings/token_embedding/embeddings"] == "embeddings"
    assert groups["embeddings_layer_norm/gamma"] == "embeddings"
    assert groups["transformer_layer_1/self_attention_layer/query/kernel"] == "layer_1"
    assert groups["pooler_dense/kernel"] == "pooler"
    assert adapter.word_embeddings.path == "embeddings/token_embedding/embeddings"
    names = sorted(layer.name for layer in adapter.lora_layers(["query", "value"]))
    assert names == ["query", "query", "value", "value"]


def test_a_masked_lm_checkpoint_has_no_pooler(tmp_path):
    """roberta-base style: `roberta.`-prefixed tensors, an `lm_head`, no pooler weights."""
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "roberta"
    shutil.copytree(FIXTURE, folder)
    (folder / "pytorch_model.bin").unlink()
    weights = load_file(str(folder / "model.safetensors"))
    renamed = {f"roberta.{k}": v for k, v in weights.items() if not k.startswith("pooler.")}
    renamed["lm_head.bias"] = np.zeros(3, np.float32)
    save_file(renamed, str(folder / "model.safetensors"))
    adapter = RobertaAdapter.from_hf_folder(folder)
    assert adapter.pooler is None
    assert "pooled_output" not in adapter.features_model().output


def test_loads_through_the_hf_loader():
    adapter = load_encoder({"name": "hf", "path": str(FIXTURE)})
    assert isinstance(adapter, RobertaAdapter)
    assert adapter.source == f"hf:{FIXTURE}"


def test_missing_tensor_and_unsupported_config_are_clear_errors(tmp_path):
    folder = tmp_path / "roberta"
    shutil.copytree(FIXTURE, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(EncoderLoadError, match="no weights file"):
        RobertaAdapter.from_hf_folder(folder)
    config = json.loads((FIXTURE / "config.json").read_text())
    config["position_embedding_type"] = "relative_key"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderLoadError, match="position_embedding_type 'relative_key'"):
        RobertaAdapter.from_hf_folder(folder)
