"""The BERT family: keras-hub `BertBackbone`, HF-exact WordPiece, `[CLS] a [SEP] b [SEP]`.

Also Chinese RoBERTa-wwm-ext / MacBERT checkpoints: BERT architecture with a WordPiece
`vocab.txt` (their `model_type` is `bert`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import keras
import keras_hub
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from xtune.encoders.adapter import (
    FAMILIES,
    EncoderAdapter,
    EncoderLoadError,
    HfCheckpoint,
    HfNames,
    Packing,
    PieceTokenizer,
    WordPieces,
    match_lora_layers,
)
from xtune.encoders.checkpoint_files import read_json_object
from xtune.encoders.encoder import HF_HIDDEN_ACTS, HIDDEN_ACTIVATIONS, set_hidden_activation
from xtune.encoders.hf_port import (
    assign,
    dense_tensors,
    encoder_layer_tensors,
    json_file,
    norm_tensors,
    port_dense,
    port_encoder_layers,
    port_norm,
    tensor,
    to_numpy,
)
from xtune.encoders.hf_weights import read_hf_weights, strip_prefix

VOCAB_FILE = "vocab.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
# BertTokenizer's special tokens: written literally in a text, each is its own id.
LITERAL_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Hugging Face's BasicTokenizer drops control/format characters (Unicode category C*) except
# \t \n \r, which it treats as whitespace like every Zs space; Python's `str.split` then also
# splits at the line and paragraph separators U+2028 / U+2029 (Zl, Zp).
CONTROL_CHARACTERS = r"[^\P{C}\t\n\r]"
WHITESPACE = r"[\t\n\r\p{Zs}\p{Zl}\p{Zp}]"

# keras-hub's layer names in a BertBackbone, by parameter group.
EMBEDDING_LAYERS = (
    "token_embedding",
    "position_embedding",
    "segment_embedding",
    "embeddings_layer_norm",
)
POOLER_LAYER = "pooled_dense"
TRANSFORMER_LAYER = re.compile(r"transformer_layer_(\d+)")


def read_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise EncoderLoadError(f"{path}: vocabulary file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise EncoderLoadError(
            f"{path}: line {line}: bytes that are not valid UTF-8; expected one token a line, "
            "saved as UTF-8"
        ) from None
    tokens = [line.rstrip("\r") for line in text.split("\n")]
    if tokens and tokens[-1] == "" and text.endswith("\n"):
        tokens.pop()  # the last line's end, not an empty token
    first_line: dict[str, int] = {}
    for number, token in enumerate(tokens, start=1):
        if token in first_line:
            raise EncoderLoadError(
                f"{path}: line {number} repeats the token {token!r} of line {first_line[token]}; "
                "expected each token once (a token's line is its id)"
            )
        first_line[token] = number
    return tokens


class WordPieceTokenizer(PieceTokenizer):
    """Hugging Face's `BertTokenizer`, in-graph: control characters dropped, whitespace
    unified, then (`lowercase`) lower-casing plus accent stripping, CJK characters split, and
    greedy longest-match WordPiece.

    Lower-casing is `tf.strings.lower` plus keras-hub's accent stripping, as Hugging Face
    does; keras-hub's own `lowercase=True` also NFKC-folds full-width punctuation, which BERT
    does not.
    """

    def __init__(self, vocabulary: list[str], lowercase: bool):
        for token in SPECIAL_TOKENS:
            if token not in vocabulary:
                raise EncoderLoadError(f"the WordPiece vocabulary has no {token} token")
        self.vocabulary = list(vocabulary)
        self.lowercase = bool(lowercase)
        self.cls_id = self.vocabulary.index("[CLS]")
        self.sep_id = self.vocabulary.index("[SEP]")
        self.pad_id = self.vocabulary.index("[PAD]")
        self.unk_id = self.vocabulary.index("[UNK]")
        self.mask_id = self.vocabulary.index("[MASK]") if "[MASK]" in self.vocabulary else None
        self.literal_specials = [t for t in LITERAL_SPECIAL_TOKENS if t in self.vocabulary]
        self.wordpiece = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=self.vocabulary,
            lowercase=False,
            strip_accents=self.lowercase,
            split_on_cjk=True,
            special_tokens=self.literal_specials,
            special_tokens_in_strings=True,
            dtype="int32",
        )

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def tokenize(self, texts: Any) -> Any:
        texts = tf.strings.regex_replace(texts, CONTROL_CHARACTERS, "")
        texts = tf.strings.regex_replace(texts, WHITESPACE, " ")
        if self.lowercase:
            texts = self.lower_outside_specials(texts)
        return self.wordpiece(texts)

    def lower_outside_specials(self, texts: Any) -> Any:
        """Lower-case everything but literal special tokens, as Hugging Face does."""
        pattern = "|".join(re.escape(token) for token in self.literal_specials)
        pieces = tf_text.regex_split(texts, pattern, keep_delim_regex_pattern=pattern)
        special = tf.zeros_like(pieces.flat_values, dtype=tf.bool)
        for token in self.literal_specials:
            special |= tf.equal(pieces.flat_values, token)
        lowered = tf.strings.lower(pieces.flat_values, encoding="utf-8")
        # One segment join on the flat pieces (a ragged reduce_join adds hundreds of ops).
        return tf.strings.unsorted_segment_join(
            tf.where(special, pieces.flat_values, lowered),
            pieces.value_rowids(),
            num_segments=pieces.nrows(),
        )

    def save(self, folder: Path) -> dict[str, Any]:
        (Path(folder) / VOCAB_FILE).write_text(
            "".join(f"{token}\n" for token in self.vocabulary), encoding="utf-8"
        )
        return {"lowercase": self.lowercase}

    @classmethod
    def load(cls, folder: Path, record: dict[str, Any]) -> WordPieceTokenizer:
        return cls(read_vocabulary(Path(folder) / VOCAB_FILE), record["lowercase"])

    def settings(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase}

    def word_pieces(self) -> WordPieces:
        """A `##` piece continues the word before it; every other piece begins one."""
        continues = [piece.startswith("##") for piece in self.vocabulary]
        texts = [p[2:] if c else p for p, c in zip(self.vocabulary, continues, strict=True)]
        return WordPieces(texts, ~np.asarray(continues, bool))

    def fingerprint(self) -> str:
        # v2: literal special tokens and U+2028/U+2029 (older caches hold other ids).
        digest = hashlib.sha256(f"wordpiece v2 lower={self.lowercase}\n".encode())
        digest.update("\n".join(self.vocabulary).encode("utf-8"))
        return digest.hexdigest()[:24]


@FAMILIES.register("bert")
class BertAdapter(EncoderAdapter):
    """keras-hub's `BertBackbone` with a WordPiece tokenizer.

    keras-hub's BERT hard-codes tanh-approximate GELU; `hidden_activation` swaps in the one
    the checkpoint was trained with (`gelu_exact` for `hidden_act: gelu`).
    """

    family = "bert"
    packing = Packing("bert", segment_ids=True)
    supports_tuning = True
    hf_names = HfNames(
        base_prefix="bert",
        model_class="BertModel",
        masked_lm_class="BertForMaskedLM",
        masked_lm_prefixes=("cls.predictions.",),
        vocabulary_tensors=(
            "cls.predictions.bias",
            "cls.predictions.decoder.weight",
            "cls.predictions.decoder.bias",
        ),
    )

    def __init__(
        self,
        backbone: keras.Model,
        tokenizer: PieceTokenizer,
        source: str,
        hidden_activation: str = "gelu_approximate",
    ):
        super().__init__(backbone, tokenizer, source)
        set_hidden_activation(backbone, hidden_activation)
        self.hidden_activation = hidden_activation
        self._features_model: keras.Model | None = None

    @property
    def num_layers(self) -> int:
        return int(self.backbone.num_layers)

    @property
    def max_positions(self) -> int:
        return int(self.backbone.max_sequence_length)

    def features_model(self) -> keras.Model:
        """A functional view of the backbone that also exposes every transformer layer.

        It reuses the backbone's own layers (no new weights): each block was called once
        when the backbone was built, so its output is a node of the backbone's graph.
        """
        if self.tuning is not None:
            return self.tuned_features_model()
        if self._features_model is None:
            backbone = self.backbone
            hidden_states = [
                backbone.get_layer(f"transformer_layer_{i}").output for i in range(self.num_layers)
            ]
            outputs = {
                "sequence_output": backbone.output["sequence_output"],
                "pooled_output": backbone.output["pooled_output"],
                "hidden_states": hidden_states,
            }
            self._features_model = keras.Model(backbone.input, outputs, name="bert_features")
        return self._features_model

    def features(self, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = self.features_model()({name: inputs[name] for name in self.input_names})
        return {**outputs, "padding_mask": inputs["padding_mask"]}

    def blocks(self) -> list[keras.layers.Layer]:
        return [self.backbone.get_layer(f"transformer_layer_{i}") for i in range(self.num_layers)]

    def pooled_output_layer(self) -> keras.layers.Layer | None:
        return self.backbone.get_layer(POOLER_LAYER)

    def parameter_group(self, variable_path: str) -> str | None:
        layer = variable_path.split("/")[0]
        if layer in EMBEDDING_LAYERS:
            return "embeddings"
        if layer == POOLER_LAYER:
            return "pooler"
        match = TRANSFORMER_LAYER.fullmatch(layer)
        return f"layer_{match.group(1)}" if match else None

    def lora_layers(self, targets: list[str]) -> list[keras.layers.Layer]:
        blocks = [self.backbone.get_layer(f"transformer_layer_{i}") for i in range(self.num_layers)]
        return match_lora_layers(blocks, list(targets))

    @property
    def word_embeddings(self) -> keras.Variable:
        return self.backbone.get_layer("token_embedding").embeddings

    def record(self) -> dict[str, Any]:
        return {
            "backbone_class": type(self.backbone).__name__,
            "backbone_config": self.backbone.get_config(),
            "hidden_activation": self.hidden_activation,
            "source": self.source,
        }

    @classmethod
    def rebuild(cls, record: dict[str, Any], tokenizer: PieceTokenizer) -> BertAdapter:
        backbone_class = getattr(keras_hub.models, record.get("backbone_class", "BertBackbone"))
        config = dict(record["backbone_config"])
        config.pop("dtype", None)  # follow the current global policy
        backbone = backbone_class.from_config(config)
        return cls(backbone, tokenizer, record["source"], record["hidden_activation"])

    @classmethod
    def from_hf_folder(
        cls, folder: Path, lowercase: bool | None = None, dropout: float | None = None
    ) -> BertAdapter:
        """config.json (`model_type: bert`) + vocab.txt + model.safetensors or, read without
        torch, pytorch_model.bin (many Chinese checkpoints ship only that)."""
        folder = Path(folder)
        if not (folder / VOCAB_FILE).is_file():
            raise EncoderLoadError(
                f"{folder}: not a Hugging Face BERT folder (vocab.txt is missing); expected "
                "config.json, vocab.txt and model.safetensors or pytorch_model.bin (a BERT "
                "folder with XLM-R's vocabulary is the multilingual_e5 family: encoder `hf`)"
            )
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        activation = hidden_activation_of(config.get("hidden_act", "gelu"), folder / "config.json")
        if (folder / "model.safetensors").is_file():
            backbone = keras_hub.models.BertBackbone.from_preset(
                str(folder), **backbone_overrides(dropout)
            )
        else:
            backbone = bert_from_weights_files(folder, config, dropout)
        lowercase = hf_lowercase(folder) if lowercase is None else lowercase
        tokenizer = WordPieceTokenizer(read_vocabulary(folder / VOCAB_FILE), lowercase)
        return cls(backbone, tokenizer, f"hf:{folder}", activation)

    def hf_checkpoint(self, tokenizer: PieceTokenizer, word_embeddings: Any) -> HfCheckpoint:
        """config.json (`model_type: bert`), `BertModel`'s tensors, vocab.txt and
        tokenizer_config.json (`do_lower_case`): what `from_hf_folder` reads."""
        tokenizer = wordpiece_tokenizer(tokenizer, "a Hugging Face BERT folder")
        return HfCheckpoint(
            bert_hf_config(self, word_embeddings, tokenizer.pad_id),
            bert_hf_tensors(self.backbone, word_embeddings),
            wordpiece_hf_files(tokenizer, "BertTokenizer", self.max_positions),
        )

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> BertAdapter:
        """2 layers, hidden 16, over `[PAD] [UNK] [CLS] [SEP] [MASK]`, a-z and w0, w1, ..."""
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        words = [f"w{i}" for i in range(max(0, vocabulary_size - 31))]
        vocabulary = (specials + letters + words)[:vocabulary_size]
        options = {
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 16,
            "intermediate_dim": 32,
            "max_sequence_length": 64,
            "dropout": 0.0,
            **kwargs,
        }
        backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), **options)
        tokenizer = WordPieceTokenizer(vocabulary, lowercase=True)
        return cls(backbone, tokenizer, "tiny random BERT", "gelu_exact")


def bert_from_weights_files(folder: Path, config: dict, dropout: float | None) -> keras.Model:
    """A `BertBackbone` from a folder's weights read by `read_hf_weights` (`.bin` without
    torch, sharded files); the backbone's shape from config.json as keras-hub's own converter
    reads it (its default 2 token types)."""
    weights = strip_prefix(read_hf_weights(folder), "bert")
    try:
        kwargs = {
            "vocabulary_size": config["vocab_size"],
            "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"],
            "hidden_dim": config["hidden_size"],
            "intermediate_dim": config["intermediate_size"],
            "max_sequence_length": config["max_position_embeddings"],
        }
    except KeyError as error:
        raise EncoderLoadError(f"{folder}: a BERT config needs {error.args[0]!r}") from None
    backbone = keras_hub.models.BertBackbone(**kwargs, **backbone_overrides(dropout))
    port_bert_weights(backbone, weights, folder)
    return backbone


def port_bert_weights(backbone: keras.Model, weights: dict, source: Path) -> None:
    """HF `BertModel` tensors (without the `bert.` prefix) into a `BertBackbone`."""
    for layer, key in (
        ("token_embedding", "word_embeddings"),
        ("segment_embedding", "token_type_embeddings"),
    ):
        key = f"embeddings.{key}.weight"
        assign(backbone.get_layer(layer).embeddings, tensor(weights, key, source), key, source)
    key = "embeddings.position_embeddings.weight"
    variable = backbone.get_layer("position_embedding").position_embeddings
    assign(variable, tensor(weights, key, source), key, source)
    port_norm(backbone.get_layer("embeddings_layer_norm"), weights, "embeddings.LayerNorm", source)
    port_encoder_layers(backbone, weights, source)
    port_dense(backbone.get_layer(POOLER_LAYER), weights, "pooler.dense", source)


def bert_hf_config(encoder: BertAdapter, word_embeddings: Any, pad_id: int) -> dict[str, Any]:
    """A `BertConfig` for the encoder's `BertBackbone` (keras-hub's layer norms: 1e-12)."""
    backbone = encoder.backbone
    return {
        "model_type": "bert",
        "vocab_size": int(word_embeddings.shape[0]),
        "hidden_size": int(backbone.hidden_dim),
        "num_hidden_layers": int(backbone.num_layers),
        "num_attention_heads": int(backbone.num_heads),
        "intermediate_size": int(backbone.intermediate_dim),
        "hidden_act": HF_HIDDEN_ACTS[encoder.hidden_activation],
        "hidden_dropout_prob": float(backbone.dropout),
        "attention_probs_dropout_prob": float(backbone.dropout),
        "max_position_embeddings": int(backbone.max_sequence_length),
        "type_vocab_size": int(backbone.num_segments),
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "pad_token_id": int(pad_id),
        "position_embedding_type": "absolute",
        "dtype": "float32",
    }


def bert_hf_tensors(backbone: keras.Model, word_embeddings: Any) -> dict[str, Any]:
    """The inverse of `port_bert_weights`: `BertModel`'s tensors, with `word_embeddings` as
    the word rows (the backbone's own, or a trimmed vocabulary's rows scattered back)."""
    return {
        "embeddings.word_embeddings.weight": to_numpy(word_embeddings),
        "embeddings.position_embeddings.weight": to_numpy(
            backbone.get_layer("position_embedding").position_embeddings
        ),
        "embeddings.token_type_embeddings.weight": to_numpy(
            backbone.get_layer("segment_embedding").embeddings
        ),
        **norm_tensors(backbone.get_layer("embeddings_layer_norm"), "embeddings.LayerNorm"),
        **encoder_layer_tensors(backbone),
        **dense_tensors(backbone.get_layer(POOLER_LAYER), "pooler.dense"),
    }


def wordpiece_tokenizer(tokenizer: PieceTokenizer, folder_kind: str) -> WordPieceTokenizer:
    if not isinstance(tokenizer, WordPieceTokenizer):
        raise ValueError(
            f"{folder_kind} needs a WordPiece vocabulary; this encoder's tokenizer is a "
            f"{type(tokenizer).__name__}"
        )
    return tokenizer


def wordpiece_hf_files(
    tokenizer: WordPieceTokenizer, tokenizer_class: str, max_positions: int
) -> dict[str, bytes]:
    """vocab.txt and tokenizer_config.json as Hugging Face's `BertTokenizer` reads them:
    `do_lower_case` (accents stripped with it: `strip_accents: null`), CJK characters split."""
    specials = {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]", "mask": "[MASK]"}
    config = {
        "tokenizer_class": tokenizer_class,
        "do_lower_case": tokenizer.lowercase,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "model_max_length": int(max_positions),
        **{f"{role}_token": t for role, t in specials.items() if t in tokenizer.vocabulary},
    }
    vocabulary = "".join(f"{token}\n" for token in tokenizer.vocabulary)
    return {VOCAB_FILE: vocabulary.encode("utf-8"), "tokenizer_config.json": json_file(config)}


def has_xlm_roberta_vocabulary(folder: Path) -> bool:
    """A BERT-architecture folder with XLM-R's SentencePiece vocabulary instead of vocab.txt
    (multilingual MiniLM, multilingual-e5)."""
    return (folder / "sentencepiece.bpe.model").is_file() or (folder / "tokenizer.json").is_file()


def hf_lowercase(folder: Path) -> bool:
    """`do_lower_case` from tokenizer_config.json; HF's BertTokenizer defaults it to True.

    Some uploads omit the key; a name that says "cased" (and not "uncased") means False.
    """
    config_path = folder / "tokenizer_config.json"
    config = read_json_object(config_path) if config_path.is_file() else {}
    if "do_lower_case" in config:
        return bool(config["do_lower_case"])
    name = str(config.get("name_or_path", folder.name)).lower()
    return not ("cased" in name and "uncased" not in name)


def hidden_activation_of(hidden_act: str, source: Path) -> str:
    if hidden_act not in HIDDEN_ACTIVATIONS:
        raise EncoderLoadError(
            f"{source}: hidden_act {hidden_act!r} is not supported; "
            f"valid: {', '.join(HIDDEN_ACTIVATIONS)}"
        )
    return HIDDEN_ACTIVATIONS[hidden_act]


def backbone_overrides(dropout: float | None) -> dict:
    return {} if dropout is None else {"dropout": dropout}
