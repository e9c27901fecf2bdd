"""The ALBERT family: keras-hub `AlbertBackbone` converted from a Hugging Face state dict.

Factorised embeddings (`embedding_size` -> `hidden_size` projection) and cross-layer sharing:
`num_hidden_groups` groups of `inner_group_num` transformer blocks, applied
`num_hidden_layers` times in all. The vocabulary is SentencePiece (`spiece.model`, the
English checkpoints) or a BERT WordPiece `vocab.txt` (the Chinese ALBERT checkpoints); packing
is BERT's `[CLS] a [SEP] b [SEP]` with segment ids.
"""

from __future__ import annotations

import json
import re
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
from xtune.encoders.bert import (
    WordPieceTokenizer,
    hf_lowercase,
    read_vocabulary,
    wordpiece_hf_files,
)
from xtune.encoders.encoder import HF_HIDDEN_ACTS, HIDDEN_ACTIVATIONS
from xtune.encoders.hf_port import (
    assign,
    dense_tensors,
    json_file,
    norm_tensors,
    port_dense,
    port_norm,
    port_transformer_block,
    tensor,
    to_numpy,
    transformer_block_tensors,
)
from xtune.encoders.hf_weights import read_hf_weights, strip_prefix
from xtune.encoders.keras_hub_internals import call_output
from xtune.encoders.sentencepiece_tokenizer import SentencePieceTokenizer
from xtune.encoders.transformer_family import KerasHubTransformerAdapter

EMBEDDING_LAYERS = (
    "token_embedding",
    "position_embedding",
    "segment_embedding",
    "embeddings_layer_norm",
    "embedding_projection",
)
POOLER_LAYER = "pooled_dense"
GROUP_LAYER = re.compile(r"group_(\d+)_inner_layer_(\d+)")
# HF names inside `encoder.albert_layer_groups.{g}.albert_layers.{i}.` for each role of a
# keras-hub TransformerEncoder.
ALBERT_BLOCK_KEYS = {
    "query": "attention.query",
    "key": "attention.key",
    "value": "attention.value",
    "attention_output": "attention.dense",
    "attention_norm": "attention.LayerNorm",
    "intermediate": "ffn",
    "output": "ffn_output",
    "output_norm": "full_layer_layer_norm",
}


@FAMILIES.register("albert")
class AlbertAdapter(KerasHubTransformerAdapter):
    """keras-hub's `AlbertBackbone` with a SentencePiece or WordPiece tokenizer.

    Parameter groups with shared layers: group `g`'s blocks are applied `num_layers /
    num_groups` times, as layers `g * r` to `(g + 1) * r - 1` (r = applications per group).
    Their weights belong to the group of their **last** application, `layer_{(g + 1) * r - 1}`:
    with the usual single group that is `layer_{L-1}`, so layer-wise LR decay gives the shared
    weights the top layer's rate (decaying them by `decay^(L-1)` would all but freeze the whole
    encoder), and `train_top_layers: k` keeps them trainable for any k >= 1. The embeddings
    group holds the factorised embeddings and their projection to the hidden size.
    `hidden_states` has one entry per application (`num_layers`), as Hugging Face's. LoRA
    wraps each shared block's projections once: its delta applies at every application.
    """

    family = "albert"
    packing = Packing("bert", segment_ids=True)
    backbone_class = "AlbertBackbone"
    embedding_layers = EMBEDDING_LAYERS
    default_activation = "gelu_approximate"
    supports_tuning = False  # shared blocks: one prefix would serve every application
    hf_names = HfNames(
        base_prefix="albert",
        model_class="AlbertModel",
        masked_lm_class="AlbertForMaskedLM",
        masked_lm_prefixes=("predictions.",),
        vocabulary_tensors=(
            "predictions.bias",
            "predictions.decoder.weight",
            "predictions.decoder.bias",
        ),
    )

    def __init__(
        self,
        backbone: keras.Model,
        tokenizer: PieceTokenizer,
        source: str,
        hidden_activation: str | None = None,
    ):
        super().__init__(backbone, tokenizer, source, hidden_activation)
        # Built now: the shared blocks' call nodes 0..r-1 are the backbone's own graph.
        self._features_model = self.build_features_model()

    def features_model(self) -> keras.Model:
        """A functional view of the backbone with every layer application's output."""
        return self._features_model

    @property
    def applications_per_group(self) -> int:
        return self.num_layers // int(self.backbone.num_groups)

    def blocks(self) -> list[keras.layers.Layer]:
        """Every distinct transformer block (group by group), each possibly applied often."""
        return [block for group in self.backbone.transformer_layers for block in group]

    def build_features_model(self) -> keras.Model:
        """The backbone's graph, also exposing the output of every layer application: a
        shared block called r times has r call nodes, in call order."""
        hidden_states = []
        for group in self.backbone.transformer_layers:
            for application in range(self.applications_per_group):
                hidden_states.append(call_output(group[-1], application))
        outputs = {
            "sequence_output": self.backbone.output["sequence_output"],
            "pooled_output": self.backbone.output["pooled_output"],
            "hidden_states": hidden_states,
        }
        return keras.Model(self.backbone.input, outputs, name="albert_features")

    def parameter_group(self, variable_path: str) -> str | None:
        layer = variable_path.split("/")[0]
        if layer in EMBEDDING_LAYERS:
            return "embeddings"
        if layer == POOLER_LAYER:
            return "pooler"
        match = GROUP_LAYER.fullmatch(layer)
        if match is None:
            return None
        last_application = (int(match.group(1)) + 1) * self.applications_per_group - 1
        return f"layer_{last_application}"

    @classmethod
    def from_hf_folder(
        cls, folder: Path, lowercase: bool | None = None, dropout: float | None = None
    ) -> AlbertAdapter:
        """config.json (`model_type: albert`), model.safetensors or pytorch_model.bin, and
        spiece.model or vocab.txt."""
        folder = Path(folder)
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        tokenizer = albert_tokenizer(folder, lowercase)
        if tokenizer.vocabulary_size > config["vocab_size"]:
            raise EncoderLoadError(
                f"{folder}: the tokenizer has {tokenizer.vocabulary_size} ids but config.json's "
                f"vocab_size is {config['vocab_size']}"
            )
        backbone = keras_hub.models.AlbertBackbone(**backbone_kwargs(config, config_path, dropout))
        port_albert_weights(backbone, strip_prefix(read_hf_weights(folder), "albert"), folder)
        activation = config.get("hidden_act", "gelu_new")
        if activation not in HIDDEN_ACTIVATIONS:
            raise EncoderLoadError(
                f"{config_path}: hidden_act {activation!r} is not supported; "
                f"valid: {', '.join(HIDDEN_ACTIVATIONS)}"
            )
        return cls(backbone, tokenizer, f"hf:{folder}", HIDDEN_ACTIVATIONS[activation])

    def hf_checkpoint(self, tokenizer: PieceTokenizer, word_embeddings: Any) -> HfCheckpoint:
        """config.json (`model_type: albert`), `AlbertModel`'s tensors, and spiece.model or
        (a WordPiece vocabulary, as the Chinese ALBERT checkpoints) vocab.txt, with
        tokenizer_config.json."""
        if isinstance(tokenizer, WordPieceTokenizer):
            files = wordpiece_hf_files(tokenizer, "BertTokenizer", self.max_positions)
        elif isinstance(tokenizer, SentencePieceTokenizer):
            files = albert_sentencepiece_hf_files(tokenizer, self.max_positions)
        else:
            raise ValueError(
                "a Hugging Face ALBERT folder needs a SentencePiece or WordPiece vocabulary; "
                f"this encoder's tokenizer is a {type(tokenizer).__name__}"
            )
        backbone = self.backbone
        config = {
            "model_type": "albert",
            "vocab_size": int(word_embeddings.shape[0]),
            "embedding_size": int(backbone.embedding_dim),
            "hidden_size": int(backbone.hidden_dim),
            "num_hidden_layers": int(backbone.num_layers),
            "num_attention_heads": int(backbone.num_heads),
            "intermediate_size": int(backbone.intermediate_dim),
            "num_hidden_groups": int(backbone.num_groups),
            "inner_group_num": int(backbone.num_inner_repetitions),
            "hidden_act": HF_HIDDEN_ACTS[self.hidden_activation],
            "hidden_dropout_prob": float(backbone.dropout),
            "attention_probs_dropout_prob": float(backbone.dropout),
            "max_position_embeddings": int(backbone.max_sequence_length),
            "type_vocab_size": int(backbone.num_segments),
            "layer_norm_eps": 1e-12,
            "initializer_range": 0.02,
            "pad_token_id": tokenizer.pad_id,
            "bos_token_id": tokenizer.cls_id,
            "eos_token_id": tokenizer.sep_id,
            "dtype": "float32",
        }
        return HfCheckpoint(config, albert_hf_tensors(backbone, word_embeddings), files)

    @classmethod
    def tiny_random(cls, vocabulary_size: int, **kwargs: Any) -> AlbertAdapter:
        """2 layers in 2 groups (hidden 16, embeddings 8) over the WordPiece vocabulary of
        `BertAdapter.tiny_random` (as the Chinese ALBERT checkpoints ship).

        One group per layer by default because the shared contract tests expect weights in
        every `layer_{i}`; pass `num_groups=1` for ALBERT's usual sharing."""
        from xtune.encoders.bert import BertAdapter

        tokenizer = BertAdapter.tiny_random(vocabulary_size).tokenizer
        options = {"num_groups": 2, "embedding_dim": 8, **kwargs}
        backbone = cls.tiny_backbone(tokenizer.vocabulary_size, **options)
        return cls(backbone, tokenizer, "tiny random ALBERT", "gelu_approximate")


def backbone_kwargs(config: dict, source: Path, dropout: float | None) -> dict[str, Any]:
    try:
        return {
            "vocabulary_size": config["vocab_size"],
            "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"],
            "embedding_dim": config["embedding_size"],
            "hidden_dim": config["hidden_size"],
            "intermediate_dim": config["intermediate_size"],
            "num_groups": config.get("num_hidden_groups", 1),
            "num_inner_repetitions": config.get("inner_group_num", 1),
            "dropout": config.get("hidden_dropout_prob", 0.0) if dropout is None else dropout,
            "max_sequence_length": config.get("max_position_embeddings", 512),
            "num_segments": config.get("type_vocab_size", 2),
        }
    except KeyError as error:
        raise EncoderLoadError(f"{source}: an ALBERT config needs {error.args[0]!r}") from None


def port_albert_weights(backbone: keras.Model, weights: dict, source: Path) -> None:
    """HF `AlbertModel` tensors (without the `albert.` prefix) into an `AlbertBackbone`."""
    embeddings = "embeddings."
    for layer, key in (
        (backbone.token_embedding, "word_embeddings"),
        (backbone.segment_embedding, "token_type_embeddings"),
    ):
        value = tensor(weights, f"{embeddings}{key}.weight", source)
        assign(layer.embeddings, value, f"{embeddings}{key}.weight", source)
    positions = tensor(weights, "embeddings.position_embeddings.weight", source)
    variable = backbone.position_embedding.position_embeddings
    assign(variable, positions, "embeddings.position_embeddings.weight", source)
    port_norm(backbone.embeddings_layer_norm, weights, "embeddings.LayerNorm", source)
    port_dense(
        backbone.embeddings_projection, weights, "encoder.embedding_hidden_mapping_in", source
    )
    for group_index, group in enumerate(backbone.transformer_layers):
        for inner_index, block in enumerate(group):
            port_transformer_block(
                block, weights, albert_block_keys(group_index, inner_index), source
            )
    if "pooler.weight" in weights:
        port_dense(backbone.pooled_dense, weights, "pooler", source)


def albert_block_keys(group_index: int, inner_index: int) -> dict[str, str]:
    prefix = f"encoder.albert_layer_groups.{group_index}.albert_layers.{inner_index}."
    return {role: prefix + key for role, key in ALBERT_BLOCK_KEYS.items()}


def albert_hf_tensors(backbone: keras.Model, word_embeddings: Any) -> dict[str, Any]:
    """The inverse of `port_albert_weights` (the pooler included: the backbone has one)."""
    tensors = {
        "embeddings.word_embeddings.weight": to_numpy(word_embeddings),
        "embeddings.token_type_embeddings.weight": to_numpy(backbone.segment_embedding.embeddings),
        "embeddings.position_embeddings.weight": to_numpy(
            backbone.position_embedding.position_embeddings
        ),
        **norm_tensors(backbone.embeddings_layer_norm, "embeddings.LayerNorm"),
        **dense_tensors(backbone.embeddings_projection, "encoder.embedding_hidden_mapping_in"),
        **dense_tensors(backbone.pooled_dense, "pooler"),
    }
    for group_index, group in enumerate(backbone.transformer_layers):
        for inner_index, block in enumerate(group):
            keys = albert_block_keys(group_index, inner_index)
            tensors.update(transformer_block_tensors(block, keys))
    return tensors


def albert_sentencepiece_hf_files(
    tokenizer: SentencePieceTokenizer, max_positions: int
) -> dict[str, bytes]:
    """spiece.model and tokenizer_config.json as `AlbertTokenizer` (and `albert_tokenizer`)
    read them; a SentencePiece tokenizer without ALBERT's conventions is refused."""
    if tokenizer.id_offset or tokenizer.id_map or not tokenizer.replace_quotes:
        raise ValueError(
            "a Hugging Face ALBERT folder needs SentencePiece ids as they are and ALBERT's "
            f"quote replacement; this tokenizer has {tokenizer.settings()}"
        )
    pieces = {token_id: piece for piece, token_id in tokenizer.special_tokens.items()}
    roles = {"cls": tokenizer.cls_id, "sep": tokenizer.sep_id, "pad": tokenizer.pad_id}
    roles["unk"] = tokenizer.unk_id
    missing = [role for role, token_id in roles.items() if token_id not in pieces]
    if missing:
        raise ValueError(f"the ALBERT tokenizer has no literal token for {', '.join(missing)}")
    tokens = {f"{role}_token": pieces[token_id] for role, token_id in roles.items()}
    others = [piece for piece in tokenizer.special_tokens if piece not in tokens.values()]
    config = {
        "tokenizer_class": "AlbertTokenizer",
        "do_lower_case": tokenizer.lowercase,
        "keep_accents": not tokenizer.strip_accents,
        "remove_space": True,
        "bos_token": tokens["cls_token"],
        "eos_token": tokens["sep_token"],
        **tokens,
        **({"mask_token": others[0]} if others else {}),
        "model_max_length": int(max_positions),
    }
    return {"spiece.model": tokenizer.proto, "tokenizer_config.json": json_file(config)}


def special_token(config: dict, name: str, default: str) -> str:
    """A tokenizer_config.json special token: a string or `{"content": ...}`."""
    value = config.get(name, default)
    return value.get("content", default) if isinstance(value, dict) else str(value)


def albert_tokenizer(folder: Path, lowercase: bool | None = None) -> PieceTokenizer:
    """`spiece.model` with ALBERT's HF normalisation (`do_lower_case`, default True;
    `keep_accents`, default False), else a BERT `vocab.txt` (Chinese ALBERT checkpoints; also
    preferred when tokenizer_config.json's `tokenizer_class` is a BERT tokenizer)."""
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    wordpiece = str(config.get("tokenizer_class", "")).startswith("Bert")
    if (folder / "spiece.model").is_file() and not (wordpiece and (folder / "vocab.txt").is_file()):
        return albert_sentencepiece(folder / "spiece.model", config, lowercase)
    if (folder / "vocab.txt").is_file():
        lower = hf_lowercase(folder) if lowercase is None else lowercase
        return WordPieceTokenizer(read_vocabulary(folder / "vocab.txt"), lower)
    raise EncoderLoadError(
        f"{folder}: an ALBERT folder needs a vocabulary: spiece.model or vocab.txt"
    )


def albert_sentencepiece(
    path: Path, config: dict, lowercase: bool | None = None
) -> SentencePieceTokenizer:
    proto = path.read_bytes()
    probe = SentencePieceTokenizer(proto, cls_id=0, sep_id=0, pad_id=0, unk_id=0)
    ids, literals = {}, {}
    for role, default in (("cls", "[CLS]"), ("sep", "[SEP]"), ("pad", "<pad>"), ("unk", "<unk>")):
        piece = special_token(config, f"{role}_token", default)
        ids[f"{role}_id"] = literals[piece] = probe.piece_id(piece)
        if ids[f"{role}_id"] is None:
            raise EncoderLoadError(f"{path}: the SentencePiece model has no {piece!r} piece")
    mask = special_token(config, "mask_token", "[MASK]")
    if probe.piece_id(mask) is not None:
        literals[mask] = probe.piece_id(mask)
    return SentencePieceTokenizer(
        proto,
        **ids,
        lowercase=bool(config.get("do_lower_case", True)) if lowercase is None else lowercase,
        strip_accents=not config.get("keep_accents", False),
        replace_quotes=True,
        special_tokens=literals,
    )
