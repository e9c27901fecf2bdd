"""The RoBERTa family: keras-hub `RobertaBackbone` converted from a Hugging Face state dict,
a byte-level BPE tokenizer (`vocab.json` + `merges.txt`), `<s> a </s></s> b </s>`.

Positions: Hugging Face numbers real tokens from `pad_token_id + 1` (2); keras-hub numbers
them from 0, so the position rows from there on are copied (right-padded inputs, as xtune's,
get the same embeddings) and the longest input is `max_position_embeddings - 2`. RoBERTa has
no segments: every token gets token type 0, whose row is folded into the position rows.
`RobertaModel` checkpoints carry a pooler (tanh dense on `<s>`): it becomes `pooled_output`
when its weights are there (masked-LM checkpoints such as roberta-base have none).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

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
)
from xtune.encoders.encoder import HF_HIDDEN_ACTS, HIDDEN_ACTIVATIONS
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
from xtune.encoders.keras_hub_internals import initialize_bpe_tables, merge_into_bpe_cache
from xtune.encoders.transformer_family import KerasHubTransformerAdapter

VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
# Hugging Face's RobertaTokenizer defaults; tokenizer_config.json may rename them.
DEFAULT_SPECIAL_TOKENS = {
    "cls_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
KERAS_HUB_EPSILON = 1e-5  # what RobertaBackbone's layer norms are built with
EMBEDDING_LAYERS = ("embeddings", "embeddings_layer_norm")
POOLER_LAYER = "pooler_dense"


# Unicode White_Space beyond RE2's `\s` ([\t\n\f\r ]). Hugging Face's GPT-2 pre-split treats
# them all as spaces; keras-hub 0.32 adds only U+00A0, U+2009, U+202F and U+3000, so e.g. a
# contraction after U+2028 or U+0085 (`\u2028's`) was split differently.
WHITESPACE_BEYOND_RE2 = (
    r"\x{0b}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
# keras-hub's split patterns (byte_pair_tokenizer.py) with that whitespace class.
SPLIT_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"
    rf"|[\s{WHITESPACE_BEYOND_RE2}]+[\n\r\t\f६{WHITESPACE_BEYOND_RE2}]| ?\p{{L}}+|"
    rf" ?[\p{{N}}]+| ?[^\s\p{{L}}\p{{N}}{WHITESPACE_BEYOND_RE2}]+"
)
TRAILING_SPACE_PATTERN = rf"[ \t\r\f\v६{WHITESPACE_BEYOND_RE2}]$"


def unsplittable_alternates(unsplittable_tokens: list[str]) -> list[str]:
    """keras-hub's `create_alts_for_unsplittable_tokens`: `ĴA`, `ĴB`, ... (index digits as
    letters), stand-ins that the split patterns keep whole."""
    return [
        "Ĵ" + "".join(chr(ord("A") + int(d)) for d in str(i))
        for i in range(len(unsplittable_tokens))
    ]


def remove_strings(tokens: tf.RaggedTensor, string: str) -> tf.RaggedTensor:
    """keras-hub's `remove_strings_from_inputs`: the rows of 2-D `tokens` without `string`."""
    kept = tokens != string
    return tf.RaggedTensor.from_row_lengths(
        values=tf.gather_nd(tokens, tf.where(kept)),
        row_lengths=tf.reduce_sum(tf.cast(kept, "int64"), axis=1),
    )


def split_for_bpe(inputs: tf.Tensor, unsplittable_tokens: list[str]) -> tf.RaggedTensor:
    """keras-hub's `split_strings_for_bpe` (GPT-2's pre-split without look-ahead: a `६`
    marks a space that belongs to the next word), with the full whitespace class."""
    inputs = tf.strings.regex_replace(inputs, rf"( )([^\s{WHITESPACE_BEYOND_RE2}])", r"६\1\2")
    inputs = tf.strings.regex_replace(inputs, rf"([\s{WHITESPACE_BEYOND_RE2}])$", r"\1६")
    alternates = unsplittable_alternates(unsplittable_tokens)
    for token, alternate in zip(unsplittable_tokens, alternates, strict=True):
        inputs = tf_text.regex_split(inputs, re.escape(token), re.escape(token))
        inputs = tf.strings.regex_replace(inputs, re.escape(token), alternate)
    raw_tokens = tf_text.regex_split(inputs, SPLIT_PATTERN, SPLIT_PATTERN)
    raw_tokens = tf_text.regex_split(raw_tokens, TRAILING_SPACE_PATTERN, TRAILING_SPACE_PATTERN)
    for token, alternate in zip(unsplittable_tokens, alternates, strict=True):
        raw_tokens = tf.strings.regex_replace(raw_tokens, re.escape(alternate), token)
    while raw_tokens.shape.rank > 2:
        raw_tokens = raw_tokens.merge_dims(1, 2)
    return remove_strings(raw_tokens, "६")


class WhitespaceExactBytePairTokenizer(keras_hub.tokenizers.BytePairTokenizer):
    """keras-hub's `BytePairTokenizer` with `tokenize_ragged`: its TensorFlow path (cache,
    merges, id lookup) after a pre-split with `split_for_bpe`. keras-hub's own `tokenize`
    keeps keras-hub's pre-split; xtune calls only `tokenize_ragged`."""

    def tokenize_ragged(self, inputs: Any) -> tf.RaggedTensor:
        """Ids as a `tf.RaggedTensor` in a graph and eagerly alike (keras-hub's `tokenize`
        turns eager results into Python lists)."""
        with tf.device("cpu"):
            return self.tokenize_split(tf.convert_to_tensor(inputs, tf.string))

    def tokenize_split(self, inputs: tf.Tensor) -> tf.RaggedTensor:
        initialize_bpe_tables(self)
        if self.add_prefix_space:
            inputs = tf.strings.join([" ", inputs])
        inputs = tf.convert_to_tensor(inputs)
        unbatched = inputs.shape.rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)
        raw_tokens = split_for_bpe(inputs, list(self.unsplittable_tokens or []))
        flat_tokens = raw_tokens.flat_values
        cache_lookup = self.cache.lookup(flat_tokens)
        unseen = (cache_lookup == "") & (flat_tokens != "")

        def merge_unseen_tokens():
            merge_into_bpe_cache(self, tf.boolean_mask(flat_tokens, cache_lookup == ""))
            return self.cache.lookup(flat_tokens)

        words = tf.cond(tf.reduce_any(unseen), merge_unseen_tokens, lambda: cache_lookup)
        tokens = self.token_to_id_map.lookup(tf.strings.split(words, sep=" "))
        tokens = tf.RaggedTensor.from_row_splits(
            tokens.flat_values, tf.gather(tokens.row_splits, raw_tokens.row_splits)
        )
        return tf.squeeze(tokens, 0) if unbatched else tokens


# Eagerly keras-hub's BPE runs op by op (~13 ms a row on 2 cores); traced it takes ~1 ms a
# row but ~10 s to trace, once per tokenizer: only batches this large (the data pipeline
# tokenizes 2,048-row chunks) take the traced path.
GRAPH_BATCH = 256


class TracedTokenize:
    """A traced `tokenize` kept off the tokenizer's tf.Module tracking (a plain holder), so a
    SavedModel holding the tokenizer does not store it as an extra function.

    Traced once per tokenizer and called from every graph that tokenizes a batch of strings
    (each new `TextEncoder`, the tf.data pipeline, an export's signatures): there it is one
    call op, where the BPE's ops would otherwise be traced again into each graph (a pair
    encoder traced them twice). A SavedModel keeps it as a library function of the
    signatures that call it."""

    def __init__(self, tokenize):
        self.tokenize = tf.function(
            tokenize, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
        )


def is_string_batch(texts: Any) -> bool:
    """A 1-D string tensor: what `TracedTokenize`'s input signature takes."""
    return isinstance(texts, tf.Tensor) and texts.dtype == tf.string and texts.shape.rank == 1


class ByteLevelBPETokenizer(PieceTokenizer, tf.Module):
    """Hugging Face's `RobertaTokenizer`, in-graph: GPT-2's byte-level BPE
    (keras-hub's `BytePairTokenizer`) with the special tokens kept whole, as Hugging Face
    matches them in raw text (`a <s> b` gives the `<s>` id).

    A `tf.Module`, so a SavedModel that holds it tracks the lookup tables `tokenize` uses
    (its own mappings are read-only proxies, which tf.Module leaves untracked). keras-hub
    would run Hugging Face's `tokenizers` outside a graph; the TensorFlow path is forced so
    the data pipeline and the export run the same code.
    """

    def __init__(
        self,
        vocabulary: dict[str, int],
        merges: list[str],
        special_tokens: dict[str, str] | None = None,
        add_prefix_space: bool = False,
    ):
        tf.Module.__init__(self, name="byte_level_bpe_tokenizer")
        self.vocabulary = MappingProxyType(dict(vocabulary))
        self.merges = tuple(merges)
        self.special_tokens = MappingProxyType({**DEFAULT_SPECIAL_TOKENS, **(special_tokens or {})})
        self.add_prefix_space = bool(add_prefix_space)
        for key in ("cls_token", "sep_token", "pad_token", "unk_token"):
            if self.special_tokens[key] not in self.vocabulary:
                raise EncoderLoadError(
                    f"the BPE vocabulary has no {self.special_tokens[key]} ({key}) token"
                )
        self.cls_id = self.vocabulary[self.special_tokens["cls_token"]]
        self.sep_id = self.vocabulary[self.special_tokens["sep_token"]]
        self.pad_id = self.vocabulary[self.special_tokens["pad_token"]]
        self.unk_id = self.vocabulary[self.special_tokens["unk_token"]]
        self.mask_id = self.vocabulary.get(self.special_tokens["mask_token"])
        unsplittable = sorted({t for t in self.special_tokens.values() if t in self.vocabulary})
        self.bpe = WhitespaceExactBytePairTokenizer(
            vocabulary=dict(vocabulary),
            merges=list(merges),
            add_prefix_space=self.add_prefix_space,
            unsplittable_tokens=unsplittable,
            dtype="int32",
            _allow_python_workflow=False,
        )
        self._traced = TracedTokenize(self.bpe_tokenize)

    @property
    def vocabulary_size(self) -> int:
        return max(self.vocabulary.values()) + 1

    def tokenize(self, texts: Any) -> Any:
        if tf.executing_eagerly():
            texts = tf.convert_to_tensor(texts)
            if texts.shape.rank == 1 and texts.shape[0] >= GRAPH_BATCH:
                return self._traced.tokenize(texts)
        elif is_string_batch(texts):  # in a graph: call the one trace (see TracedTokenize)
            return self._traced.tokenize(texts)
        return self.bpe_tokenize(texts)

    # AutoGraph would transpile keras-hub's BPE code on the first trace (~16 s); it needs
    # none (its loops are tf.while_loop already), so every trace skips it.
    @tf.autograph.experimental.do_not_convert
    def bpe_tokenize(self, texts: Any) -> Any:
        return self.bpe.tokenize_ragged(texts)

    def save(self, folder: Path) -> dict[str, Any]:
        folder = Path(folder)
        (folder / VOCAB_FILE).write_text(
            json.dumps(dict(self.vocabulary), ensure_ascii=False), encoding="utf-8"
        )
        (folder / MERGES_FILE).write_text(
            "#version: 0.2\n" + "".join(f"{merge}\n" for merge in self.merges), encoding="utf-8"
        )
        return {
            "special_tokens": dict(self.special_tokens),
            "add_prefix_space": self.add_prefix_space,
        }

    @classmethod
    def load(cls, folder: Path, record: dict[str, Any]) -> ByteLevelBPETokenizer:
        vocabulary, merges = read_bpe_files(Path(folder))
        return cls(vocabulary, merges, record["special_tokens"], record["add_prefix_space"])

    def settings(self) -> dict[str, Any]:
        return {"add_prefix_space": self.add_prefix_space}

    def word_pieces(self) -> WordPieces:
        """A piece that starts with the space byte (`Ġ`) begins a word; any other continues
        the one before. A piece's text is its bytes as UTF-8 (a piece holding part of a
        character's bytes gives only the whole characters it holds)."""
        byte_of = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
        texts = [""] * self.vocabulary_size
        starts = np.ones(self.vocabulary_size, bool)
        for piece, index in self.vocabulary.items():
            if piece in self.special_tokens.values() or not all(c in byte_of for c in piece):
                continue
            raw = bytes(byte_of[c] for c in piece)
            texts[index] = raw.decode("utf-8", errors="ignore").removeprefix(" ")
            starts[index] = raw.startswith(b" ")
        return WordPieces(texts, starts)

    @classmethod
    def from_hf_folder(cls, folder: Path) -> ByteLevelBPETokenizer:
        """vocab.json + merges.txt (or the BPE model inside tokenizer.json), with the special
        tokens and `add_prefix_space` of tokenizer_config.json."""
        folder = Path(folder)
        if (folder / VOCAB_FILE).is_file():
            vocabulary, merges = read_bpe_files(folder)
        elif (folder / "tokenizer.json").is_file():
            vocabulary, merges = read_bpe_tokenizer_json(folder / "tokenizer.json")
        else:
            raise EncoderLoadError(
                f"{folder}: a RoBERTa vocabulary needs vocab.json and merges.txt "
                "(or tokenizer.json)"
            )
        config = read_json(folder / "tokenizer_config.json")
        special_tokens = {
            key: token_content(config[key])
            for key in DEFAULT_SPECIAL_TOKENS
            if config.get(key) is not None
        }
        return cls(vocabulary, merges, special_tokens, bool(config.get("add_prefix_space", False)))


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise EncoderLoadError(f"{path}: not valid JSON ({error})") from None


def token_content(token: Any) -> str:
    """A special token as tokenizer_config.json writes it: a string or `{"content": ...}`."""
    return str(token["content"]) if isinstance(token, dict) else str(token)


def read_bpe_files(folder: Path) -> tuple[dict[str, int], list[str]]:
    vocabulary = read_json(folder / VOCAB_FILE)
    merges_path = folder / MERGES_FILE
    if not merges_path.is_file():
        raise EncoderLoadError(f"{folder}: {MERGES_FILE} is missing beside {VOCAB_FILE}")
    lines = merges_path.read_text(encoding="utf-8").split("\n")
    merges = [line for line in lines if line and not line.startswith("#version")]
    return vocabulary, merges


def read_bpe_tokenizer_json(path: Path) -> tuple[dict[str, int], list[str]]:
    model = read_json(path).get("model", {})
    if model.get("type") != "BPE":
        raise EncoderLoadError(f"{path}: the tokenizer is {model.get('type')!r}, not BPE")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return dict(model["vocab"]), merges


@FAMILIES.register("roberta")
class RobertaAdapter(KerasHubTransformerAdapter):
    """keras-hub's `RobertaBackbone` (+ the checkpoint's pooler) with a byte-level BPE."""

    family = "roberta"
    packing = Packing("roberta", segment_ids=False)
    backbone_class = "RobertaBackbone"
    embedding_layers = EMBEDDING_LAYERS
    keras_hub_epsilon = KERAS_HUB_EPSILON
    optional_pooler = True
    pooler_layer = POOLER_LAYER
    hf_names = HfNames(
        base_prefix="roberta",
        model_class="RobertaModel",
        masked_lm_class="RobertaForMaskedLM",
        masked_lm_prefixes=("lm_head.",),
        vocabulary_tensors=("lm_head.bias", "lm_head.decoder.weight", "lm_head.decoder.bias"),
    )

    @classmethod
    def from_hf_folder(
        cls, folder: Path, lowercase: bool | None = None, dropout: float | None = None
    ) -> RobertaAdapter:
        """config.json (`model_type: roberta`), model.safetensors or pytorch_model.bin, and
        vocab.json + merges.txt (or tokenizer.json)."""
        folder = Path(folder)
        config_path = folder / "config.json"
        if lowercase:
            raise EncoderLoadError(
                f"{folder}: RoBERTa's byte-level BPE is cased; `lowercase` does not apply"
            )
        config = read_json(config_path)
        check_roberta_config(config, config_path)
        tokenizer = ByteLevelBPETokenizer.from_hf_folder(folder)
        weights = strip_prefix(read_hf_weights(folder), "roberta")
        backbone = keras_hub.models.RobertaBackbone(**backbone_kwargs(config, config_path, dropout))
        port_roberta_embeddings(backbone, weights, position_offset(config), folder)
        port_encoder_layers(backbone, weights, folder)
        activation = config.get("hidden_act", "gelu")
        epsilon = float(config.get("layer_norm_eps", 1e-12))  # BertConfig's default
        pooler = "pooler.dense.weight" in weights
        adapter = cls(
            backbone, tokenizer, f"hf:{folder}", HIDDEN_ACTIVATIONS[activation], epsilon, pooler
        )
        if pooler:
            port_dense(adapter.pooler, weights, "pooler.dense", folder)
        return adapter

    def hf_checkpoint(self, tokenizer: PieceTokenizer, word_embeddings: Any) -> HfCheckpoint:
        """config.json (`model_type: roberta`), `RobertaModel`'s tensors (the pooler where
        this encoder has one), vocab.json, merges.txt and tokenizer_config.json."""
        if not isinstance(tokenizer, ByteLevelBPETokenizer):
            raise ValueError(
                "a Hugging Face RoBERTa folder needs a byte-level BPE vocabulary; this "
                f"encoder's tokenizer is a {type(tokenizer).__name__}"
            )
        tensors = roberta_hf_tensors(self.backbone, word_embeddings, tokenizer.pad_id + 1)
        if self.pooler is not None:
            tensors.update(dense_tensors(self.pooler, "pooler.dense"))
        return HfCheckpoint(
            roberta_hf_config(self, tokenizer, word_embeddings, "roberta"),
            tensors,
            byte_level_bpe_hf_files(tokenizer, self.max_positions),
        )

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> RobertaAdapter:
        """2 layers, hidden 16, with a pooler, over a byte-level BPE of `<s> <pad> </s> <unk>`,
        the 256 byte symbols, merges (`Ġa`, ...) up to `vocabulary_size - 1` and `<mask>`
        (at least 287 ids: every byte needs one, and keras-hub needs some merges)."""
        vocabulary, merges = tiny_bpe(vocabulary_size)
        tokenizer = ByteLevelBPETokenizer(vocabulary, merges)
        backbone = cls.tiny_backbone(tokenizer.vocabulary_size, **kwargs)
        return cls(backbone, tokenizer, "tiny random RoBERTa", pooler=True)


def check_roberta_config(config: dict[str, Any], source: Path) -> None:
    """What RobertaBackbone cannot express is an error, not a silently different model."""
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise EncoderLoadError(
            f"{source}: position_embedding_type {config['position_embedding_type']!r} is not "
            "supported; only 'absolute'"
        )
    activation = config.get("hidden_act", "gelu")
    if activation not in HIDDEN_ACTIVATIONS:
        raise EncoderLoadError(
            f"{source}: hidden_act {activation!r} is not supported; "
            f"valid: {', '.join(HIDDEN_ACTIVATIONS)}"
        )


def position_offset(config: dict[str, Any]) -> int:
    """HF RoBERTa's first real position: `padding_idx + 1` (2 with the usual pad id 1)."""
    return int(config.get("pad_token_id", 1)) + 1


def backbone_kwargs(config: dict, source: Path, dropout: float | None) -> dict[str, Any]:
    try:
        return {
            "vocabulary_size": config["vocab_size"],
            "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"],
            "hidden_dim": config["hidden_size"],
            "intermediate_dim": config["intermediate_size"],
            "dropout": config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout,
            "max_sequence_length": config["max_position_embeddings"] - position_offset(config),
        }
    except KeyError as error:
        raise EncoderLoadError(f"{source}: a RoBERTa config needs {error.args[0]!r}") from None


def port_roberta_embeddings(backbone, weights: dict, offset: int, source: Path) -> None:
    """Word rows as they are; position rows from `offset` on, plus token type 0's row."""
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


def roberta_hf_config(
    encoder: EncoderAdapter, tokenizer: PieceTokenizer, word_embeddings: Any, model_type: str
) -> dict[str, Any]:
    """A RoBERTa-style config (RoBERTa, XLM-R): one token type, real tokens' positions from
    `pad_token_id + 1`, the encoder's layer-norm epsilon."""
    backbone = encoder.backbone
    return {
        "model_type": model_type,
        "vocab_size": int(word_embeddings.shape[0]),
        "hidden_size": int(backbone.hidden_dim),
        "num_hidden_layers": int(backbone.num_layers),
        "num_attention_heads": int(backbone.num_heads),
        "intermediate_size": int(backbone.intermediate_dim),
        "hidden_act": HF_HIDDEN_ACTS[encoder.hidden_activation],
        "hidden_dropout_prob": float(backbone.dropout),
        "attention_probs_dropout_prob": float(backbone.dropout),
        "max_position_embeddings": int(backbone.max_sequence_length) + tokenizer.pad_id + 1,
        "type_vocab_size": 1,
        "layer_norm_eps": float(encoder.layer_norm_epsilon),
        "initializer_range": 0.02,
        "pad_token_id": tokenizer.pad_id,
        "bos_token_id": tokenizer.cls_id,
        "eos_token_id": tokenizer.sep_id,
        "position_embedding_type": "absolute",
        "dtype": "float32",
    }


def roberta_hf_tensors(backbone, word_embeddings: Any, offset: int) -> dict[str, np.ndarray]:
    """The inverse of `port_roberta_embeddings` + `port_encoder_layers` (RoBERTa, XLM-R): the
    position rows go from `offset` on; the rows before it (Hugging Face gives them only to
    padding) and token type 0's row (already folded into the positions) are zeros."""
    positions = to_numpy(backbone.embeddings.position_embedding.position_embeddings)
    hidden = positions.shape[1]
    return {
        "embeddings.word_embeddings.weight": to_numpy(word_embeddings),
        "embeddings.position_embeddings.weight": np.concatenate(
            [np.zeros((offset, hidden), np.float32), positions]
        ),
        "embeddings.token_type_embeddings.weight": np.zeros((1, hidden), np.float32),
        **norm_tensors(backbone.get_layer("embeddings_layer_norm"), "embeddings.LayerNorm"),
        **encoder_layer_tensors(backbone),
    }


def byte_level_bpe_hf_files(
    tokenizer: ByteLevelBPETokenizer, max_positions: int
) -> dict[str, bytes]:
    """vocab.json, merges.txt and tokenizer_config.json as `RobertaTokenizer` reads them."""
    special = dict(tokenizer.special_tokens)
    config = {
        "tokenizer_class": "RobertaTokenizer",
        "add_prefix_space": tokenizer.add_prefix_space,
        "bos_token": special["cls_token"],
        "eos_token": special["sep_token"],
        **special,
        "errors": "replace",
        "model_max_length": int(max_positions),
    }
    vocabulary = json.dumps(dict(tokenizer.vocabulary), ensure_ascii=False)
    merges = "#version: 0.2\n" + "".join(f"{merge}\n" for merge in tokenizer.merges)
    return {
        VOCAB_FILE: vocabulary.encode("utf-8"),
        MERGES_FILE: merges.encode("utf-8"),
        "tokenizer_config.json": json_file(config),
    }


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each of the 256 bytes (`bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def tiny_bpe(vocabulary_size: int) -> tuple[dict[str, int], list[str]]:
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *byte_symbols()]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    candidates = [(left, right) for left in ["Ġ", *letters] for right in letters]
    count = max(len(letters), vocabulary_size - len(tokens) - 1)  # keras-hub fails on none
    merges = [f"{a} {b}" for a, b in candidates[:count]]
    tokens += [merge.replace(" ", "") for merge in merges] + ["<mask>"]
    return {token: index for index, token in enumerate(tokens)}, merges
