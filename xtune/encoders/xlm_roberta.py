"""The XLM-RoBERTa family: keras-hub `XLMRobertaBackbone` converted from a Hugging Face state
dict, a SentencePiece vocabulary with fairseq ids, `<s> a </s></s> b </s>` without segment ids.

Positions: Hugging Face numbers real tokens from `padding_idx + 1` = 2; keras-hub numbers them
from 0, so position rows 2.. are copied (right-padded inputs, as xtune's, give the same
embeddings) and the longest input is `max_position_embeddings - 2`. The single token-type row
is folded into the position rows, as keras-hub's own converter does. There is no pooler
(`pooled_output` is absent; heads pool `sequence_output`): fairseq's XLM-R has none, so a
Hugging Face checkpoint's `pooler.*` was not pretrained, and keras-hub's backbone has none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import keras_hub

from xtune.encoders.adapter import (
    FAMILIES,
    EncoderLoadError,
    HfCheckpoint,
    HfNames,
    Packing,
    PieceTokenizer,
)
from xtune.encoders.encoder import HIDDEN_ACTIVATIONS
from xtune.encoders.hf_port import (
    assign,
    json_file,
    port_encoder_layers,
    port_norm,
    tensor,
)
from xtune.encoders.hf_weights import read_hf_weights, strip_prefix
from xtune.encoders.roberta import roberta_hf_config, roberta_hf_tensors
from xtune.encoders.sentencepiece_tokenizer import SentencePieceTokenizer
from xtune.encoders.transformer_family import KerasHubTransformerAdapter

EMBEDDING_LAYERS = ("embeddings", "embeddings_layer_norm")


def position_offset(config: dict) -> int:
    """HF numbers real tokens from `padding_idx + 1` (`pad_token_id`, 1 in XLM-R)."""
    return int(config.get("pad_token_id", 1)) + 1


KERAS_HUB_EPSILON = 1e-5  # what XLMRobertaBackbone's layer norms are built with


@FAMILIES.register("xlm_roberta")
class XlmRobertaAdapter(KerasHubTransformerAdapter):
    """keras-hub's `XLMRobertaBackbone` with an XLM-R SentencePiece tokenizer."""

    family = "xlm_roberta"
    packing = Packing("roberta", segment_ids=False)
    backbone_class = "XLMRobertaBackbone"
    embedding_layers = EMBEDDING_LAYERS
    keras_hub_epsilon = KERAS_HUB_EPSILON
    hf_names = HfNames(
        base_prefix="roberta",
        model_class="XLMRobertaModel",
        masked_lm_class="XLMRobertaForMaskedLM",
        masked_lm_prefixes=("lm_head.",),
        vocabulary_tensors=("lm_head.bias", "lm_head.decoder.weight", "lm_head.decoder.bias"),
    )

    @classmethod
    def from_hf_folder(
        cls, folder: Path, lowercase: bool | None = None, dropout: float | None = None
    ) -> XlmRobertaAdapter:
        """config.json (`model_type: xlm-roberta`), model.safetensors or pytorch_model.bin,
        and sentencepiece.bpe.model (or a Unigram tokenizer.json)."""
        folder = Path(folder)
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        tokenizer = xlm_roberta_tokenizer(folder, config.get("vocab_size"), lowercase)
        backbone = keras_hub.models.XLMRobertaBackbone(
            **backbone_kwargs(config, config_path, dropout)
        )
        weights = strip_prefix(read_hf_weights(folder), "roberta")
        port_xlm_roberta_weights(backbone, weights, folder, position_offset(config))
        activation = config.get("hidden_act", "gelu")
        if activation not in HIDDEN_ACTIVATIONS:
            raise EncoderLoadError(
                f"{config_path}: hidden_act {activation!r} is not supported; "
                f"valid: {', '.join(HIDDEN_ACTIVATIONS)}"
            )
        epsilon = float(config.get("layer_norm_eps", KERAS_HUB_EPSILON))
        return cls(backbone, tokenizer, f"hf:{folder}", HIDDEN_ACTIVATIONS[activation], epsilon)

    def hf_checkpoint(self, tokenizer: PieceTokenizer, word_embeddings: Any) -> HfCheckpoint:
        """config.json (`model_type: xlm-roberta`), `XLMRobertaModel`'s tensors without the
        pooler (this encoder has none: Hugging Face initialises one), sentencepiece.bpe.model
        and tokenizer_config.json."""
        return HfCheckpoint(
            roberta_hf_config(self, tokenizer, word_embeddings, "xlm-roberta"),
            roberta_hf_tensors(self.backbone, word_embeddings, tokenizer.pad_id + 1),
            xlm_roberta_hf_files(tokenizer, self.max_positions),
        )

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> XlmRobertaAdapter:
        """2 layers, hidden 16, over a hand-made SentencePiece model: `▁`, a-z, `▁a`-`▁z`
        and `▁w0`, `▁w1`, ... up to `vocabulary_size` fairseq ids (`<mask>` last)."""
        proto = tiny_sentencepiece_proto(vocabulary_size)
        tokenizer = SentencePieceTokenizer.xlm_roberta(proto, lowercase=True)
        backbone = cls.tiny_backbone(tokenizer.vocabulary_size, **kwargs)
        return cls(backbone, tokenizer, "tiny random XLM-R")


def backbone_kwargs(config: dict, source: Path, dropout: float | None) -> dict[str, Any]:
    try:
        max_positions = config["max_position_embeddings"] - position_offset(config)
        return {
            "vocabulary_size": config["vocab_size"],
            "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"],
            "hidden_dim": config["hidden_size"],
            "intermediate_dim": config["intermediate_size"],
            "dropout": config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout,
            "max_sequence_length": max_positions,
        }
    except KeyError as error:
        raise EncoderLoadError(f"{source}: an XLM-R config needs {error.args[0]!r}") from None


def port_xlm_roberta_weights(
    backbone: keras.Model, weights: dict, source: Path, offset: int = 2
) -> None:
    """HF `XLMRobertaModel` tensors (without the `roberta.` prefix) into the backbone; real
    tokens' position rows start at `offset`."""
    key = "embeddings.word_embeddings.weight"
    assign(backbone.token_embedding.embeddings, tensor(weights, key, source), key, source)
    variable = backbone.embeddings.position_embedding.position_embeddings
    key = "embeddings.position_embeddings.weight"
    positions = tensor(weights, key, source)[offset : offset + variable.shape[0]]
    type_key = "embeddings.token_type_embeddings.weight"
    if type_key in weights:  # every token has type 0: fold its row into the positions
        positions = positions + tensor(weights, type_key, source)[0]
    assign(variable, positions, key, source)
    port_norm(backbone.get_layer("embeddings_layer_norm"), weights, "embeddings.LayerNorm", source)
    port_encoder_layers(backbone, weights, source)


def xlm_roberta_tokenizer(
    folder: Path, vocabulary_size: int | None = None, lowercase: bool | None = None
) -> SentencePieceTokenizer:
    """fairseq ids over `sentencepiece.bpe.model`, else over the SentencePiece model built from
    a Unigram `tokenizer.json`. Also for BERT-architecture models with an XLM-R vocabulary
    (multilingual MiniLM / e5). `lowercase` is off unless asked: XLM-R is cased."""
    folder = Path(folder)
    if (folder / "sentencepiece.bpe.model").is_file():
        proto = (folder / "sentencepiece.bpe.model").read_bytes()
    elif (folder / "tokenizer.json").is_file():
        from xtune.encoders.sentencepiece_proto import unigram_proto_from_tokenizer_json

        proto = unigram_proto_from_tokenizer_json(folder / "tokenizer.json")
    else:
        raise EncoderLoadError(
            f"{folder}: an XLM-R vocabulary needs sentencepiece.bpe.model or tokenizer.json"
        )
    tokenizer = SentencePieceTokenizer.xlm_roberta(
        proto, vocabulary_size, lowercase=bool(lowercase)
    )
    if vocabulary_size is not None and tokenizer.piece_count + 1 > vocabulary_size:
        raise EncoderLoadError(
            f"{folder}: the SentencePiece model has {tokenizer.piece_count} pieces, more than "
            f"config.json's vocab_size {vocabulary_size} holds with fairseq's offset"
        )
    return tokenizer


def xlm_roberta_hf_files(tokenizer: PieceTokenizer, max_positions: int) -> dict[str, bytes]:
    """sentencepiece.bpe.model and tokenizer_config.json as `XLMRobertaTokenizer` reads them
    (and `xlm_roberta_tokenizer`): fairseq ids over the SentencePiece model, nothing else.
    A tokenizer that lower-cases or strips accents is refused: Hugging Face's XLM-R
    tokenizer does neither, so the folder would tokenize differently."""
    if not isinstance(tokenizer, SentencePieceTokenizer):
        raise ValueError(
            "a Hugging Face folder with an XLM-R vocabulary needs a SentencePiece tokenizer; "
            f"this encoder's tokenizer is a {type(tokenizer).__name__}"
        )
    expected = SentencePieceTokenizer.xlm_roberta(tokenizer.proto, tokenizer.vocabulary_size)
    ours, theirs = tokenizer.settings(), expected.settings()
    differences = {key: ours[key] for key in ours if ours[key] != theirs.get(key)}
    if differences:
        raise ValueError(
            f"the tokenizer's settings {differences} differ from Hugging Face's XLM-R tokenizer "
            f"({ {key: theirs.get(key) for key in differences} }); a folder written with them "
            "would tokenize differently"
        )
    config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "model_max_length": int(max_positions),
    }
    return {
        "sentencepiece.bpe.model": tokenizer.proto,
        "tokenizer_config.json": json_file(config),
    }


def tiny_sentencepiece_proto(vocabulary_size: int) -> bytes:
    """A hand-made unigram `ModelProto` (identity normaliser) for tiny test models."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    piece_type = model_pb2.ModelProto.SentencePiece
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    normal = ["▁"] + letters + [f"▁{c}" for c in letters]
    # fairseq adds <pad> and <mask> to the SentencePiece pieces; 3 specials come first.
    words = [f"▁w{i}" for i in range(max(0, vocabulary_size - 2 - 3 - len(normal)))]
    proto = model_pb2.ModelProto()
    for piece, kind in (("<unk>", piece_type.UNKNOWN), ("<s>", piece_type.CONTROL)):
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    proto.pieces.add(piece="</s>", score=0.0, type=piece_type.CONTROL)
    for piece in (normal + words)[: max(1, vocabulary_size - 5)]:
        proto.pieces.add(
            piece=piece, score=-float(len(piece.lstrip("▁")) == 1), type=piece_type.NORMAL
        )
    trainer = proto.trainer_spec
    trainer.model_type = model_pb2.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(proto.pieces)
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = 0, 1, 2, -1
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = True
    normalizer.escape_whitespaces = True
    return proto.SerializeToString()
