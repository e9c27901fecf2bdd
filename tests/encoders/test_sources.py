"""Encoder loaders match the original models; altered or incomplete folders fail clearly."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import FIXTURES, TINY_VOCAB, tiny_encoder_spec
from xtune.encoders import load_encoder, rebuild_encoder, write_encoder_files
from xtune.encoders.sources import EncoderLoadError, hf_lowercase, minilm_folder
from xtune.model import encoder_features_model

INPUTS = ("token_ids", "segment_ids", "padding_mask")


@pytest.mark.large
def test_packaged_minilm_matches_pytorch_reference():
    """Reference from tools/make_reference.py (PyTorch + transformers, eval mode)."""
    reference = np.load(FIXTURES / "minilm_reference.npz")
    encoder = load_encoder("minilm-l6")
    assert encoder.hidden_activation == "gelu_exact" and encoder.tokenizer.lowercase
    outputs = encoder_features_model(encoder)({k: reference[k] for k in INPUTS})
    real = reference["padding_mask"][..., None].astype(bool)  # padded positions are arbitrary
    diff = np.abs(np.asarray(outputs["sequence_output"]) - reference["sequence_output"])
    assert np.where(real, diff, 0).max() < 1e-4
    for layer, states in enumerate(outputs["hidden_states"]):
        diff = np.abs(np.asarray(states) - reference["hidden_states"][layer])
        assert np.where(real, diff, 0).max() < 1e-4, layer
    pooled = np.abs(np.asarray(outputs["pooled_output"]) - reference["pooled_output"]).max()
    assert pooled < 1e-4


def copy_minilm(tmp_path, weights=True):
    folder = tmp_path / "minilm"
    folder.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_folder() / name, folder / name)
    if weights:
        (folder / "model.safetensors").symlink_to(minilm_folder() / "model.safetensors")
    return folder


def test_hf_folder_missing_weights_is_a_clear_error(tmp_path):
    folder = copy_minilm(tmp_path, weights=False)
    with pytest.raises(EncoderLoadError, match="no weights file; expected model.safetensors or"):
        load_encoder({"name": "hf", "path": str(folder)})


def test_altered_minilm_weights_are_refused(tmp_path, monkeypatch):
    folder = copy_minilm(tmp_path, weights=False)
    (folder / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr("xtune.encoders.sources.minilm_folder", lambda: folder)
    with pytest.raises(EncoderLoadError, match="sha256 .* does not match"):
        load_encoder("minilm-l6")
    (folder / "model.safetensors").unlink()
    with pytest.raises(EncoderLoadError, match="missing; reinstall"):
        load_encoder("minilm-l6")


def test_hf_model_type_and_activation_are_checked(tmp_path):
    folder = copy_minilm(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(
        EncoderLoadError, match="model_type 'gpt2' is not supported; supported: .*bert"
    ):
        load_encoder({"name": "hf", "path": str(folder)})
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "swish"}))
    with pytest.raises(EncoderLoadError, match="hidden_act 'swish'"):
        load_encoder({"name": "hf", "path": str(folder)})


def test_do_lower_case_fallbacks(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert hf_lowercase(tmp_path) is False
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"name_or_path": "bert-base-cased"}))
    assert hf_lowercase(tmp_path) is False
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"name_or_path": "x-uncased"}))
    assert hf_lowercase(tmp_path) is True
    (tmp_path / "tokenizer_config.json").unlink()
    assert hf_lowercase(tmp_path) is True  # HF BertTokenizer's default


def test_tf1_folder_loads_exactly_and_records_rebuild(tmp_path):
    from xtune.encoders.tf1_checkpoint import write_tf1_checkpoint

    source = load_encoder(tiny_encoder_spec())
    vocabulary = TINY_VOCAB.read_text(encoding="utf-8").splitlines()
    write_tf1_checkpoint(source.backbone, tmp_path / "ckpt", vocabulary)
    loaded = load_encoder({"name": "tf1", "path": str(tmp_path / "ckpt")})
    for a, b in zip(source.backbone.weights, loaded.backbone.weights, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    stored = write_encoder_files(loaded, tmp_path)
    rebuilt = rebuild_encoder(json.loads(json.dumps(stored)), tmp_path)
    assert rebuilt.tokenizer.vocabulary == loaded.tokenizer.vocabulary
    rebuilt.backbone.set_weights(loaded.backbone.get_weights())
    batch = {
        "token_ids": np.array([[2, 40, 41, 3, 0]], "int32"),
        "segment_ids": np.zeros((1, 5), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 0]], "int32"),
    }
    np.testing.assert_array_equal(
        np.asarray(loaded.backbone(batch)["sequence_output"]),
        np.asarray(rebuilt.backbone(batch)["sequence_output"]),
    )


def test_run_folder_records_without_family_rebuild_as_bert(tmp_path):
    """encoder.json of run folders written before encoder families: BERT + vocab.txt."""
    source = load_encoder(tiny_encoder_spec())
    vocabulary = TINY_VOCAB.read_text(encoding="utf-8").splitlines()
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    old = {**source.record(), "lowercase": False}
    rebuilt = rebuild_encoder(json.loads(json.dumps(old, default=str)), tmp_path)
    assert rebuilt.family == "bert" and rebuilt.tokenizer.lowercase is False
    assert rebuilt.tokenizer.vocabulary == vocabulary
    assert rebuilt.backbone.get_config() == source.backbone.get_config()


def test_unknown_family_in_a_record_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderLoadError, match="unknown encoder family 'gpt2'; supported: .*bert"):
        rebuild_encoder({"family": "gpt2", "encoder": {}, "tokenizer": {}}, tmp_path)
    stored = {"family": "bert", "encoder": {}, "tokenizer_class": "os.system", "tokenizer": {}}
    with pytest.raises(EncoderLoadError, match="'os.system' is not an xtune tokenizer"):
        rebuild_encoder(stored, tmp_path)
