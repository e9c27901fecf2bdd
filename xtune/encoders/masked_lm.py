"""The masked-LM head of an `mlm` task, per encoder family.

keras-hub's `MaskedLMHead` (gather the masked positions, Dense + activation, LayerNorm, then
logits through the encoder's own word embeddings, transposed, plus a bias), tied to the
encoder's token embedding as BERT, RoBERTa and XLM-R tie theirs. `initialize_from_checkpoint`
copies a Hugging Face checkpoint's head into it when the folder the encoder came from has one
(`cls.predictions.*` for BERT, `lm_head.*` for RoBERTa and XLM-R, `predictions.*` for
ALBERT, `vocab_transform`/`vocab_layer_norm`/`vocab_projector` for DistilBERT); otherwise the
new head starts from random weights (multilingual-e5-small ships none). `hf_head_weights`
names the head's weights back for a Hugging Face folder, the output bias over the full
vocabulary when the encoder's was trimmed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_hub
import numpy as np

from xtune.encoders.adapter import EncoderAdapter
from xtune.encoders.encoder import ACTIVATION_FUNCTIONS
from xtune.encoders.hf_port import assign
from xtune.encoders.hf_weights import read_hf_weights
from xtune.encoders.keras_hub_internals import masked_lm_head_parts
from xtune.encoders.trimmed_vocabulary import full_vocabulary_rows


@dataclass(frozen=True)
class HeadNames:
    """A family's Hugging Face names of the head: the transform Dense and LayerNorm (each
    with `.weight` and `.bias`), the output bias, and the LayerNorm's epsilon."""

    dense: str
    norm: str
    bias: str
    epsilon: float

    def decoder_bias(self) -> str:
        """Where newer transformers versions also keep the output bias (tied to `bias`)."""
        return self.bias.rpartition(".")[0] + ".decoder.bias"


BERT_HEAD = HeadNames(
    "cls.predictions.transform.dense",
    "cls.predictions.transform.LayerNorm",
    "cls.predictions.bias",
    1e-12,
)
ROBERTA_HEAD = HeadNames("lm_head.dense", "lm_head.layer_norm", "lm_head.bias", 1e-5)
HEAD_NAMES = {
    "bert": BERT_HEAD,
    "multilingual_e5": BERT_HEAD,
    "roberta": ROBERTA_HEAD,
    "xlm_roberta": ROBERTA_HEAD,
    "albert": HeadNames("predictions.dense", "predictions.LayerNorm", "predictions.bias", 1e-12),
    "distilbert": HeadNames("vocab_transform", "vocab_layer_norm", "vocab_projector.bias", 1e-12),
}


def head_names(encoder: EncoderAdapter) -> HeadNames:
    """The family's names; a family without an entry is a `ValueError` listing those with."""
    if encoder.family not in HEAD_NAMES:
        raise ValueError(
            f"masked-LM heads are not supported for the {encoder.family!r} encoder family "
            f"(supported: {', '.join(HEAD_NAMES)})"
        )
    return HEAD_NAMES[encoder.family]


def masked_lm_head(encoder: EncoderAdapter, name: str) -> keras.layers.Layer:
    """A `MaskedLMHead` tied to the encoder's token embedding, with the family's activation
    (the encoder's feed-forward one, as BERT's head uses) and LayerNorm epsilon; its logits
    are float32 under mixed precision."""
    activation = ACTIVATION_FUNCTIONS[getattr(encoder, "hidden_activation", "gelu_exact")]
    return keras_hub.layers.MaskedLMHead(
        token_embedding=encoder.backbone.token_embedding,
        intermediate_activation=activation,
        layer_norm_epsilon=head_names(encoder).epsilon,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype="float32",
        name=name,
    )


def checkpoint_head(folder: Path | None, names: HeadNames) -> dict[str, np.ndarray] | None:
    """The head's tensors in a Hugging Face folder by role (`dense.weight`, ..., `bias`), or
    None when there is no folder or its weights hold no head."""
    if folder is None:
        return None
    weights = read_hf_weights(folder)
    if f"{names.dense}.weight" not in weights:
        return None
    bias = weights.get(names.bias, weights.get(names.decoder_bias()))
    tensors = {
        "dense.weight": weights[f"{names.dense}.weight"],
        "dense.bias": weights[f"{names.dense}.bias"],
        "norm.weight": weights[f"{names.norm}.weight"],
        "norm.bias": weights[f"{names.norm}.bias"],
        "bias": bias,
    }
    return {role: np.asarray(value, np.float32) for role, value in tensors.items()}


def kept_rows(encoder: EncoderAdapter) -> np.ndarray | None:
    """The full vocabulary's ids the encoder's rows hold, when its vocabulary was trimmed."""
    return getattr(encoder.tokenizer, "kept_ids", None)


def initialize_from_checkpoint(encoder: EncoderAdapter, head: keras.layers.Layer) -> str:
    """Copy the checkpoint's head into `head` when the encoder's folder has one; say which."""
    names = head_names(encoder)
    tensors = checkpoint_head(encoder.checkpoint_folder, names)
    if tensors is None:
        return "a new masked-LM head tied to the word embeddings (the checkpoint has none)"
    dense, norm, bias = masked_lm_head_parts(head)
    folder = encoder.checkpoint_folder
    assign(dense.kernel, tensors["dense.weight"].T, f"{names.dense}.weight", folder)
    assign(dense.bias, tensors["dense.bias"], f"{names.dense}.bias", folder)
    assign(norm.gamma, tensors["norm.weight"], f"{names.norm}.weight", folder)
    assign(norm.beta, tensors["norm.bias"], f"{names.norm}.bias", folder)
    rows = kept_rows(encoder)
    output_bias = tensors["bias"] if rows is None else tensors["bias"][rows]
    assign(bias, output_bias, names.bias, folder)
    prefix = os.path.commonprefix([names.dense, names.norm, names.bias])
    return f"the checkpoint's masked-LM head ({prefix}*)"


def hf_head_weights(
    encoder: EncoderAdapter, head: keras.layers.Layer, full_bias: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The head's weights by Hugging Face name (torch layout). With a trimmed vocabulary the
    output bias is scattered back over the full vocabulary onto `full_bias` (the original
    checkpoint's, for the ids the corpus did not use; zeros when None)."""
    names = head_names(encoder)
    dense, norm, bias = masked_lm_head_parts(head)
    value = keras.ops.convert_to_numpy(bias).astype(np.float32)
    rows = kept_rows(encoder)
    if rows is not None:
        size = encoder.tokenizer.inner.vocabulary_size
        full = np.zeros(size, np.float32) if full_bias is None else full_bias
        value = full_vocabulary_rows(value, rows, full)
    weights = {
        f"{names.dense}.weight": keras.ops.convert_to_numpy(dense.kernel).T,
        f"{names.dense}.bias": keras.ops.convert_to_numpy(dense.bias),
        f"{names.norm}.weight": keras.ops.convert_to_numpy(norm.gamma),
        f"{names.norm}.bias": keras.ops.convert_to_numpy(norm.beta),
        names.bias: value,
    }
    return {name: np.ascontiguousarray(array, np.float32) for name, array in weights.items()}
