"""`save_hf_folder`: a written Hugging Face folder loads back, through `encoder: {name: hf}`
and through transformers, as the encoder that wrote it: the same weights, features and ids.
A trimmed vocabulary is written in full; an error leaves the target folder as it was.

Sources are the transformers-made fixtures (tools/make_tiny_hf_*.py), so the written tensors
can be compared, name by name, with what transformers itself saved; `multilingual_e5` is the
BERT fixture's weights with the XLM-R fixture's vocabulary, as in test_bert_xlmr_vocabulary.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file

from tests.encoders.family_helpers import FIXTURES, as_lists, reference
from xtune.encoders import FAMILIES, load_encoder
from xtune.encoders.hf_folder_writer import PROVENANCE_FILE, save_hf_folder
from xtune.encoders.hf_weights import read_hf_weights
from xtune.encoders.trimmed_vocabulary import full_vocabulary_rows, trim_encoder, used_token_ids
from xtune.model import encoder_features_model

REPO = Path(__file__).resolve().parents[2]
VARIANTS = [
    "bert",
    "roberta",
    "xlm_roberta",
    "distilbert",
    "albert",
    "albert_vocab_txt",
    "multilingual_e5",
]
FAMILY_OF = {"albert_vocab_txt": "albert"}
ROBERTA_STYLE = ("roberta", "xlm_roberta")  # positions from 2, token type folded into them
FOLDED = ("embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight")
CORPUS = ["Hello world!", "我们今天去北京看看天安门。", "上诉人不服一审判决，提起上诉"]
UNSEEN = ["The QUICK brown fox, jumps", "全角标点：，。！？", "Café naïve 中文 text"]


def source_folder(variant: str, root: Path) -> Path:
    if variant != "multilingual_e5":
        return FIXTURES / variant
    folder = root / "bert_with_xlm_r_vocabulary"
    if not folder.exists():
        folder.mkdir(parents=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copy(FIXTURES / "bert" / name, folder)
        for name in ("sentencepiece.bpe.model", "tokenizer_config.json"):
            shutil.copy(FIXTURES / "xlm_roberta" / name, folder)
    return folder


def load_hf(folder: Path):
    return load_encoder({"name": "hf", "path": str(folder)})


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, tuple[object, object, Path]]:
    """Each variant: (the source encoder, the encoder read back, the written folder)."""
    root = tmp_path_factory.mktemp("hf_written")
    folders = {}
    for variant in VARIANTS:
        source = load_hf(source_folder(variant, root))
        folder = save_hf_folder(source, root / variant, provenance={"corpus": "tests"})
        folders[variant] = (source, load_hf(folder), folder)
    return folders


def reference_inputs(variant: str, encoder) -> dict[str, np.ndarray]:
    ref = reference("bert" if variant == "multilingual_e5" else variant)
    return {name: ref[name] for name in encoder.input_names}


def features(encoder, inputs) -> dict[str, object]:
    outputs = encoder_features_model(encoder)(inputs)
    names = [name for name in ("sequence_output", "pooled_output") if name in outputs]
    arrays = {name: np.asarray(outputs[name]) for name in names}
    return {**arrays, "hidden_states": [np.asarray(h) for h in outputs["hidden_states"]]}


def reference_strings(variant: str) -> list[str]:
    ref = reference("xlm_roberta" if variant == "multilingual_e5" else variant)
    return [str(text) for text in ref["strings"]] + CORPUS + UNSEEN


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_folder_loads_back_with_the_same_weights_features_and_ids(variant, written):
    source, again, _ = written[variant]
    assert type(again) is type(source) and again.family == FAMILY_OF.get(variant, variant)
    assert again.hidden_activation == source.hidden_activation
    assert getattr(again, "layer_norm_epsilon", None) == getattr(source, "layer_norm_epsilon", None)
    ours = encoder_features_model(source).weights
    theirs = encoder_features_model(again).weights
    assert [w.path for w in theirs] == [w.path for w in ours]
    for mine, read in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(read.numpy(), mine.numpy(), err_msg=mine.path)
    inputs = reference_inputs(variant, source)
    expected, actual = features(source, inputs), features(again, inputs)
    assert expected.keys() == actual.keys()
    np.testing.assert_allclose(actual["sequence_output"], expected["sequence_output"], atol=1e-6)
    if "pooled_output" in expected:
        np.testing.assert_allclose(actual["pooled_output"], expected["pooled_output"], atol=1e-6)
    texts = tf.constant(reference_strings(variant))
    assert as_lists(again.tokenizer.tokenize(texts)) == as_lists(source.tokenizer.tokenize(texts))
    assert again.tokenizer.settings() == source.tokenizer.settings()


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "multilingual_e5"])
def test_the_tensors_are_those_transformers_saved(variant, written):
    """Name for name and value for value, the written tensors are the fixture's (which
    transformers wrote): RoBERTa-style position rows 2.. plus the token-type row, which the
    encoder holds folded, are compared as that sum; XLM-R's unused pooler is not written."""
    _, _, folder = written[variant]
    original, ours = read_hf_weights(FIXTURES / variant), read_hf_weights(folder)
    left_out = set(original) - set(ours)
    assert left_out == (
        {"pooler.dense.weight", "pooler.dense.bias"} if variant == "xlm_roberta" else set()
    )
    assert set(ours) <= set(original)
    for name, value in ours.items():
        assert value.dtype == np.float32 and value.shape == original[name].shape, name
        if variant in ROBERTA_STYLE and name in FOLDED:
            continue
        np.testing.assert_array_equal(value, original[name], err_msg=name)
    if variant in ROBERTA_STYLE:

        def folded(weights):
            return (
                weights["embeddings.position_embeddings.weight"][2:]
                + weights["embeddings.token_type_embeddings.weight"][0]
            )

        np.testing.assert_array_equal(folded(ours), folded(original))


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_and_records(variant, written):
    source, _, folder = written[variant]
    config = json.loads((folder / "config.json").read_text())
    original = json.loads((source_folder(variant, folder.parent) / "config.json").read_text())
    shared = {
        key: original[key]
        for key in (
            "model_type",
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "max_position_embeddings",
            "type_vocab_size",
            "layer_norm_eps",
            "pad_token_id",
            "embedding_size",
            "num_hidden_groups",
            "dim",
            "hidden_dim",
            "n_layers",
            "n_heads",
            "activation",
            "architectures",
        )  # fmt: skip
        if key in original
    }
    if variant == "multilingual_e5":  # the BERT fixture's pad id 0 is `<s>` in XLM-R's ids
        assert config["pad_token_id"] == source.tokenizer.pad_id == 1
        shared.pop("pad_token_id")
    assert {key: config.get(key) for key in shared} == shared
    record = json.loads((folder / PROVENANCE_FILE).read_text())
    assert record["provenance"] == {"corpus": "tests"} and record["family"] == source.family
    assert record["encoder_source"] == source.source and record["extra_weights"] == []


@pytest.mark.parametrize(
    ("activation", "hidden_act"), [("gelu_exact", "gelu"), ("gelu_approximate", "gelu_new")]
)
def test_hidden_act_names_the_activation_the_encoder_computes(activation, hidden_act, tmp_path):
    """keras-hub's BERT computes tanh GELU unless xtune swaps in exact GELU (`hidden_act:
    gelu` checkpoints): the folder names the one in use, and reads back to it."""
    from xtune.encoders.bert import BertAdapter

    tiny = BertAdapter.tiny_random(60)
    encoder = BertAdapter(tiny.backbone, tiny.tokenizer, "test", activation)
    folder = save_hf_folder(encoder, tmp_path / "bert")
    assert json.loads((folder / "config.json").read_text())["hidden_act"] == hidden_act
    assert load_hf(folder).hidden_activation == activation


def test_the_packaged_e5_tokenizer_class_writes_the_same_ids(tmp_path):
    """multilingual-e5-small's own tokenizer class (`HfXlmRobertaTokenizer`) on a tiny model.
    The `hf` loader reads the folder as plain SentencePiece (as transformers 5 does), which
    does not add the `▁` that class adds after text that ends in whitespace (before a literal
    special token too): compared on text without such whitespace."""
    from xtune.encoders.multilingual_e5 import HfXlmRobertaTokenizer

    source = FAMILIES.get("multilingual_e5").tiny_random(90)
    assert isinstance(source.tokenizer, HfXlmRobertaTokenizer)
    again = load_hf(save_hf_folder(source, tmp_path / "e5"))
    texts = tf.constant(["hello w1 w2", "abc<mask> xyz", "中文 text", "a  b\tc"])
    assert as_lists(again.tokenizer.tokenize(texts)) == as_lists(source.tokenizer.tokenize(texts))
    for mine, read in zip(source.backbone.weights, again.backbone.weights, strict=True):
        np.testing.assert_array_equal(read.numpy(), mine.numpy())


def test_a_lower_casing_xlm_r_tokenizer_is_refused(tmp_path):
    """Hugging Face's XLM-R tokenizer does not lower-case: such a folder would tokenize
    differently, so it is not written."""
    encoder = FAMILIES.get("xlm_roberta").tiny_random(90)  # lowercase=True
    with pytest.raises(ValueError, match="lowercase"):
        save_hf_folder(encoder, tmp_path / "xlmr")
    assert not (tmp_path / "xlmr").exists()


# ---- trimmed vocabularies


def packed(encoder, texts) -> dict[str, np.ndarray]:
    from xtune.data.tokenization import TextEncoder

    text_encoder = TextEncoder(encoder.tokenizer, encoder.packing, 24)
    inputs = text_encoder.pad(text_encoder(tf.constant(texts)), 24)
    return {name: np.asarray(inputs[name]) for name in encoder.input_names}


# One family per tokenizer kind (WordPiece, byte-level BPE, SentencePiece): the rows go back by
# `full_vocabulary_rows`, the same for every family.
@pytest.mark.parametrize("variant", ["bert", "roberta", "multilingual_e5"])
def test_a_trimmed_encoder_is_written_with_the_full_vocabulary(variant, tmp_path):
    full = load_hf(source_folder(variant, tmp_path))
    kept = used_token_ids([np.asarray(packed(full, CORPUS)["token_ids"])])
    trimmed = trim_encoder(full, kept)
    trained = trimmed.word_embeddings.numpy() + 0.5  # as if training had moved the kept rows
    trimmed.word_embeddings.assign(trained)
    folder = save_hf_folder(
        trimmed, tmp_path / "written", full_word_embeddings=full.word_embeddings
    )
    again = load_hf(folder)
    # The full vocabulary: the original ids for every text, the corpus's and others.
    texts = tf.constant(CORPUS + UNSEEN)
    assert as_lists(again.tokenizer.tokenize(texts)) == as_lists(full.tokenizer.tokenize(texts))
    rows, original = again.word_embeddings.numpy(), full.word_embeddings.numpy()
    assert rows.shape == original.shape
    kept_ids = trimmed.tokenizer.kept_ids
    np.testing.assert_array_equal(rows[kept_ids], trained)
    others = np.setdiff1d(np.arange(len(original)), kept_ids)
    np.testing.assert_array_equal(rows[others], original[others])
    # On the corpus the folder computes what the trimmed encoder computed.
    ours, theirs = packed(again, CORPUS), packed(trimmed, CORPUS)
    real = ours["padding_mask"].astype(bool)
    np.testing.assert_allclose(
        features(again, ours)["sequence_output"][real],
        features(trimmed, theirs)["sequence_output"][real],
        atol=1e-5,
    )
    record = json.loads((folder / PROVENANCE_FILE).read_text())
    assert record["vocabulary"]["size"] == full.tokenizer.vocabulary_size
    assert record["vocabulary"]["trained_trimmed_to"] == trimmed.tokenizer.vocabulary_size


def test_a_trimmed_encoder_needs_the_original_word_embedding(tmp_path):
    full = FAMILIES.get("bert").tiny_random(80)
    trimmed = trim_encoder(full, [5, 6, 7])
    with pytest.raises(ValueError, match="pass full_word_embeddings"):
        save_hf_folder(trimmed, tmp_path / "a")
    with pytest.raises(ValueError, match=r"shape \(80, 8\)"):
        save_hf_folder(trimmed, tmp_path / "a", full_word_embeddings=np.zeros((80, 8)))
    with pytest.raises(ValueError, match="is not trimmed"):
        save_hf_folder(full, tmp_path / "a", full_word_embeddings=full.word_embeddings)
    assert not (tmp_path / "a").exists()


def test_full_vocabulary_rows_puts_the_kept_rows_back():
    assert full_vocabulary_rows(np.array([7.0, 9.0]), [0, 2], np.zeros(4)).tolist() == [7, 0, 9, 0]
    with pytest.raises(ValueError, match="do not fit"):
        full_vocabulary_rows(np.ones(3), [0, 2], np.zeros(4))
    with pytest.raises(ValueError, match="do not index"):
        full_vocabulary_rows(np.ones(2), [0, 4], np.zeros(4))


# ---- extra weights (a masked-LM head)


def bert_head(hidden: int, vocabulary: int, rng) -> dict[str, np.ndarray]:
    def draw(*shape):
        return rng.normal(size=shape).astype(np.float32)

    return {
        "cls.predictions.transform.dense.weight": draw(hidden, hidden),
        "cls.predictions.transform.dense.bias": draw(hidden),
        "cls.predictions.transform.LayerNorm.weight": draw(hidden),
        "cls.predictions.transform.LayerNorm.bias": draw(hidden),
        "cls.predictions.bias": draw(vocabulary),
    }


# A masked-LM head's decoder: none (transformers ties it to the word embedding), the word
# embedding itself, and one of its own.
MLM_DECODERS = {
    "bert_mlm_tied": None,
    "bert_mlm_same_decoder": lambda encoder: encoder.word_embeddings.numpy(),
    "bert_mlm_own_decoder": lambda encoder: encoder.word_embeddings.numpy()[:, ::-1].copy(),
}


def test_a_masked_lm_head_is_written_beside_the_prefixed_base_model(tmp_path):
    source = FAMILIES.get("bert").tiny_random(60)
    head = bert_head(16, 60, np.random.default_rng(0))
    folder = save_hf_folder(source, tmp_path / "mlm", extra_weights=head)
    tensors = load_file(str(folder / "model.safetensors"))
    assert {name for name in tensors if not name.startswith("bert.")} == set(head)
    for name, value in head.items():
        np.testing.assert_array_equal(tensors[name], value)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    assert json.loads((folder / PROVENANCE_FILE).read_text())["extra_weights"] == sorted(head)
    again = load_hf(folder)
    for mine, read in zip(source.backbone.weights, again.backbone.weights, strict=True):
        np.testing.assert_array_equal(read.numpy(), mine.numpy())


def test_extra_weights_that_do_not_fit_are_refused(tmp_path):
    full = FAMILIES.get("bert").tiny_random(60)
    trimmed = trim_encoder(full, [5, 6, 7])
    head = bert_head(16, trimmed.tokenizer.vocabulary_size, np.random.default_rng(0))
    with pytest.raises(ValueError, match="cls.predictions.bias.*full_vocabulary_rows"):
        save_hf_folder(
            trimmed, tmp_path / "a", extra_weights=head, full_word_embeddings=full.word_embeddings
        )
    clash = {"bert.pooler.dense.bias": np.zeros(16, np.float32)}
    with pytest.raises(ValueError, match="would replace the encoder's own tensor"):
        save_hf_folder(full, tmp_path / "a", extra_weights=clash)
    broken = {"cls.predictions.bias": np.full(60, np.nan, np.float32)}
    with pytest.raises(ValueError, match="non-finite"):
        save_hf_folder(full, tmp_path / "a", extra_weights=broken)
    assert not (tmp_path / "a").exists()


# ---- the target folder


def test_a_folder_that_holds_anything_is_refused_and_left_alone(tmp_path):
    encoder = FAMILIES.get("bert").tiny_random(40)
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        save_hf_folder(encoder, folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        save_hf_folder(encoder, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (save_hf_folder(encoder, empty) / "model.safetensors").is_file()


def test_an_error_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    from xtune.encoders import hf_folder_writer

    def failing_save_file(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf_folder_writer, "save_file", failing_save_file)
    encoder = FAMILIES.get("bert").tiny_random(40)
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (tmp_path / "new", empty):
        with pytest.raises(OSError, match="disk full"):
            save_hf_folder(encoder, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no partial folder
    assert list(empty.iterdir()) == []
    with pytest.raises(ValueError, match="provenance is not JSON-serializable"):
        save_hf_folder(encoder, tmp_path / "new", provenance={"when": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_prompt_tuning_is_refused(tmp_path):
    from xtune.encoders.prompt_injection import EncoderTuning

    encoder = FAMILIES.get("bert").tiny_random(40)
    encoder.set_tuning(EncoderTuning(prompt_length=2))
    with pytest.raises(ValueError, match="prompt/prefix tuning"):
        save_hf_folder(encoder, tmp_path / "a")


# ---- transformers reads the folders (needs a Python with torch and transformers)


def torch_python() -> Path | None:
    """`XTUNE_TORCH_PYTHON`, else the repository's `.venv-torch` (benchmarks/README.md)."""
    path = Path(os.environ.get("XTUNE_TORCH_PYTHON", REPO / ".venv-torch" / "bin" / "python"))
    if not path.is_file():
        return None
    probe = subprocess.run([str(path), "-c", "import torch, transformers"], capture_output=True)
    return path if probe.returncode == 0 else None


TRANSFORMERS_SCRIPT = r"""
import json, sys
import numpy as np, torch, transformers

jobs = json.loads(sys.stdin.read())
answers = {}
for variant, job in jobs.items():
    model_class = getattr(transformers, job["auto_class"])
    model, info = model_class.from_pretrained(job["folder"], output_loading_info=True)
    model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(job["folder"])
    inputs = {
        "input_ids": torch.tensor(job["token_ids"]),
        "attention_mask": torch.tensor(job["padding_mask"]),
    }
    if job.get("segment_ids") is not None:
        inputs["token_type_ids"] = torch.tensor(job["segment_ids"])
    with torch.no_grad():
        output = model(**inputs, output_hidden_states=True)
    answers[variant] = {
        "class": type(model).__name__,
        "missing": sorted(info["missing_keys"]),
        "unexpected": sorted(info["unexpected_keys"]),
        "hidden_states": [h.numpy().tolist() for h in output.hidden_states[1:]],
        "ids": [tokenizer(t, add_special_tokens=False)["input_ids"] for t in job["strings"]],
    }
    if job["auto_class"] == "AutoModelForMaskedLM":
        answers[variant]["decoder"] = model.get_output_embeddings().weight.detach().numpy().tolist()
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def transformers_answers(written, tmp_path_factory):
    python = torch_python()
    if python is None:
        pytest.skip("no Python with torch and transformers (set XTUNE_TORCH_PYTHON)")
    jobs = {}
    for variant, (_, again, folder) in written.items():
        inputs = reference_inputs(variant, again)
        jobs[variant] = {
            "folder": str(folder),
            "auto_class": "AutoModel",
            "token_ids": inputs["token_ids"].astype(int).tolist(),
            "padding_mask": inputs["padding_mask"].astype(int).tolist(),
            "segment_ids": inputs["segment_ids"].astype(int).tolist()
            if "segment_ids" in inputs
            else None,
            "strings": reference_strings(variant),
        }
    source = FAMILIES.get("bert").tiny_random(60)
    token_ids = np.array([[2, 10, 11, 12, 3, 0]])
    for name, decoder in MLM_DECODERS.items():
        head = bert_head(16, 60, np.random.default_rng(1))
        if decoder is not None:
            head["cls.predictions.decoder.weight"] = decoder(source)
            # Untied, transformers reads the decoder's bias too (tied, it is the head's bias).
            head["cls.predictions.decoder.bias"] = head["cls.predictions.bias"]
        folder = tmp_path_factory.mktemp("mlm") / name
        jobs[name] = {
            "folder": str(save_hf_folder(source, folder, extra_weights=head)),
            "auto_class": "AutoModelForMaskedLM",
            "token_ids": token_ids.tolist(),
            "padding_mask": (token_ids != 0).astype(int).tolist(),
            "segment_ids": np.zeros_like(token_ids).tolist(),
            "strings": ["a b c"],
        }
    result = subprocess.run(
        [str(python), "-c", TRANSFORMERS_SCRIPT],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for name, decoder in MLM_DECODERS.items():  # a tied decoder is the word embedding
        expected = source.word_embeddings.numpy() if decoder is None else decoder(source)
        answers[name]["expected_decoder"] = expected
    return answers


@pytest.mark.parametrize("variant", VARIANTS)
def test_transformers_reads_the_folder_as_xtune_does(variant, written, transformers_answers):
    """transformers' `AutoModel` and `AutoTokenizer` on the written folder: hidden states
    within 1e-4 of xtune's on real tokens, and the same ids on every reference string."""
    _, again, _ = written[variant]
    answer = transformers_answers[variant]
    # XLM-R: xtune keeps no pooler (fairseq's has none); transformers initialises one.
    expected_missing = (
        ["pooler.dense.bias", "pooler.dense.weight"] if variant == "xlm_roberta" else []
    )
    assert answer["missing"] == expected_missing and answer["unexpected"] == []
    inputs = reference_inputs(variant, again)
    real = inputs["padding_mask"].astype(bool)
    ours = features(again, inputs)["hidden_states"]
    assert len(answer["hidden_states"]) == len(ours)
    for mine, theirs in zip(ours, answer["hidden_states"], strict=True):
        np.testing.assert_allclose(np.asarray(theirs)[real], mine[real], atol=1e-4)
    texts = reference_strings(variant)
    assert answer["ids"] == as_lists(again.tokenizer.tokenize(tf.constant(texts)))


@pytest.mark.parametrize("name", MLM_DECODERS)
def test_transformers_reads_a_masked_lm_folder_without_missing_tensors(name, transformers_answers):
    """`BertForMaskedLM` has no pooler; the folder keeps it because xtune's BERT reads it.
    The decoder is the word embedding unless the head brought another one."""
    answer = transformers_answers[name]
    assert answer["class"] == "BertForMaskedLM" and answer["missing"] == []
    assert answer["unexpected"] == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    expected = answer["expected_decoder"]
    np.testing.assert_array_equal(np.asarray(answer["decoder"], np.float32), expected)
