"""Write an encoder as a Hugging Face model folder that `encoder: {name: hf}` and transformers load.

`save_hf_folder` is the inverse of the `hf` loader: the family's `hf_checkpoint` gives
config.json, the base model's tensors by Hugging Face name and the tokenizer's files; this
module adds extra tensors (a masked-LM head), puts a trimmed vocabulary back into the full
one, and writes it all at once, with `xtune_pretraining.json` saying where it came from.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
from safetensors.numpy import save_file

from xtune import __version__
from xtune.encoders.adapter import EncoderAdapter, HfCheckpoint, HfNames, PieceTokenizer
from xtune.encoders.hf_port import json_file, to_numpy
from xtune.encoders.trimmed_vocabulary import TrimmedTokenizer, full_vocabulary_rows

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PROVENANCE_FILE = "xtune_pretraining.json"


def save_hf_folder(
    encoder: EncoderAdapter,
    folder: str | Path,
    *,
    extra_weights: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    full_word_embeddings: Any = None,
) -> Path:
    """Write `encoder` as a Hugging Face model folder; return the folder's path.

    The folder holds config.json, model.safetensors (float32, Hugging Face names), the
    tokenizer files the family's `from_hf_folder` and transformers read (vocab.txt,
    vocab.json + merges.txt, sentencepiece.bpe.model or spiece.model, with
    tokenizer_config.json), and xtune_pretraining.json. The feed-forward activation is
    written as the encoder computes it: exact GELU as `gelu`, keras-hub's tanh GELU as
    `gelu_new`. LoRA deltas are merged into the weights they adapt.

    A trimmed vocabulary (`trim_encoder`) is written in full: the original tokenizer's
    files, and a word embedding with every original row, where the kept rows are the trimmed
    encoder's (what training changed) and the others keep the original values
    (`full_vocabulary_rows`). So the folder tokenizes exactly as the original encoder did, a
    kept piece has the same id whether a later run trims again or not, and a piece the
    corpus lacked keeps the original checkpoint's row instead of becoming unknown.

    Args:
        encoder: an encoder of a family with `hf_names`: bert, multilingual_e5 (written as a
            float32 BERT folder with XLM-R's vocabulary, whatever format it was read from),
            roberta, xlm_roberta, distilbert, albert. Prompt or prefix tuning has no place
            in such a folder and is refused.
        folder: a new or empty folder. One that holds anything is refused and left as it
            is. The files go into a temporary sibling folder renamed into place when all
            are written, so an error leaves no half-written folder.
        extra_weights: more tensors, already in Hugging Face naming, e.g. a masked-LM head
            (`cls.predictions.*` for BERT, `lm_head.*` for RoBERTa and XLM-R). With them the
            base model's tensors get the task model's prefix (`bert.`), as
            `BertForMaskedLM` saves them, and `architectures` names the masked-LM class
            when every extra tensor belongs to its head. A head tensor with one row per
            token id must have the written (full) vocabulary's rows: for a trimmed
            vocabulary, put its rows back with `full_vocabulary_rows` first. A decoder tied
            to the word embedding can be left out (transformers ties it); one that differs
            from it makes config.json say `tie_word_embeddings: false`.
        provenance: a JSON-able record of what the folder was trained from and on, written
            into xtune_pretraining.json.
        full_word_embeddings: the original encoder's word embedding (array or variable),
            needed exactly when `encoder`'s vocabulary is trimmed.
    """
    folder = Path(folder).expanduser()
    check_target_folder(folder)
    if encoder.tuning is not None:
        raise ValueError(
            "the encoder has a soft prompt or prefixes (prompt/prefix tuning); a Hugging Face "
            "folder has no place for them: write the encoder without tuning"
        )
    tokenizer, word_embeddings = full_vocabulary(encoder, full_word_embeddings)
    checkpoint = encoder.hf_checkpoint(tokenizer, word_embeddings)
    tensors, architectures = model_tensors(checkpoint, encoder.hf_names, extra_weights or {})
    check_finite(tensors)
    config = {"architectures": architectures, **checkpoint.config}
    if has_untied_decoder(tensors, encoder.hf_names, word_embeddings):
        config["tie_word_embeddings"] = False  # transformers ties them unless told not to
    record = provenance_record(encoder, sorted(extra_weights or {}), provenance)
    files = {**checkpoint.tokenizer_files, CONFIG_FILE: json_file(config), PROVENANCE_FILE: record}
    write_folder(folder, files, tensors)
    return folder


def check_target_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: exists and is not a folder; expected a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder}: the folder exists and is not empty; a Hugging Face folder is written "
            "only into a new or empty folder (its files are left as they are)"
        )


def full_vocabulary(
    encoder: EncoderAdapter, full_word_embeddings: Any
) -> tuple[PieceTokenizer, np.ndarray]:
    """The tokenizer and word-embedding rows to write: the encoder's own, or for a trimmed
    vocabulary the original tokenizer and the trimmed rows scattered into the original's."""
    tokenizer, rows = encoder.tokenizer, to_numpy(encoder.word_embeddings)
    if not isinstance(tokenizer, TrimmedTokenizer):
        if full_word_embeddings is not None:
            raise ValueError(
                "full_word_embeddings is for an encoder with a trimmed vocabulary; this "
                "encoder's vocabulary is not trimmed"
            )
        return tokenizer, rows
    if full_word_embeddings is None:
        raise ValueError(
            f"the encoder's vocabulary is trimmed to {tokenizer.vocabulary_size} of "
            f"{tokenizer.inner.vocabulary_size} ids; pass full_word_embeddings (the original "
            "encoder's word embedding) so that the folder holds the full vocabulary"
        )
    full = to_numpy(full_word_embeddings)
    if full.ndim != 2 or full.shape[1] != rows.shape[1]:
        raise ValueError(
            f"full_word_embeddings has shape {full.shape}; expected [vocabulary, "
            f"{rows.shape[1]}] (the original encoder's word embedding)"
        )
    if full.shape[0] < tokenizer.inner.vocabulary_size:
        raise ValueError(
            f"full_word_embeddings has {full.shape[0]} rows, fewer than the original "
            f"tokenizer's {tokenizer.inner.vocabulary_size} ids"
        )
    return tokenizer.inner, full_vocabulary_rows(rows, tokenizer.kept_ids, full)


def model_tensors(
    checkpoint: HfCheckpoint, names: HfNames, extra_weights: dict[str, Any]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every tensor to write, and config.json's `architectures`."""
    if not extra_weights:
        return dict(checkpoint.tensors), [names.model_class]
    tensors = {f"{names.base_prefix}.{key}": value for key, value in checkpoint.tensors.items()}
    vocabulary_size = checkpoint.config["vocab_size"]
    for name, value in extra_weights.items():
        if name in tensors:
            raise ValueError(f"extra weight {name!r} would replace the encoder's own tensor")
        value = as_array(value)
        if name in names.vocabulary_tensors and value.shape[:1] != (vocabulary_size,):
            raise ValueError(
                f"extra weight {name!r} has shape {value.shape}; its first dimension must be "
                f"the written vocabulary's {vocabulary_size} ids (a trimmed vocabulary's rows "
                "go back into the full ones with `full_vocabulary_rows`)"
            )
        tensors[name] = value
    head = all(name.startswith(names.masked_lm_prefixes) for name in extra_weights)
    return tensors, [names.masked_lm_class if head else names.model_class]


def has_untied_decoder(
    tensors: dict[str, np.ndarray], names: HfNames, word_embeddings: np.ndarray
) -> bool:
    """Whether a masked-LM decoder (a head tensor of one row per id and the hidden width) is
    not the word embedding itself."""
    return any(
        tensors[name].ndim == 2 and not np.array_equal(tensors[name], word_embeddings)
        for name in names.vocabulary_tensors
        if name in tensors
    )


def as_array(value: Any) -> np.ndarray:
    """A contiguous numpy array; floating-point values as float32 (a float32 folder)."""
    array = np.asarray(keras.ops.convert_to_numpy(value))
    if array.dtype.kind in "fV":  # V: bfloat16 and the float8 types of ml_dtypes
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def check_finite(tensors: dict[str, np.ndarray]) -> None:
    """No loader accepts NaN or infinite weights (`hf` refuses them): refuse to write them."""
    for name, values in tensors.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = values.size - int(np.count_nonzero(np.isfinite(values)))
            raise ValueError(
                f"tensor {name!r} holds {bad} non-finite value(s) (NaN or infinity); refusing "
                "to write weights no loader accepts (did training diverge?)"
            )


def provenance_record(
    encoder: EncoderAdapter, extra_names: list[str], provenance: dict[str, Any] | None
) -> bytes:
    tokenizer = encoder.tokenizer
    vocabulary: dict[str, Any] = {"size": tokenizer.vocabulary_size}
    if isinstance(tokenizer, TrimmedTokenizer):
        vocabulary = {
            "size": tokenizer.inner.vocabulary_size,
            "trained_trimmed_to": tokenizer.vocabulary_size,
            "rows_not_kept": "the original encoder's",
        }
    record = {
        "written_by": f"xtune {__version__}",
        "family": encoder.family,
        "encoder_source": encoder.source,
        "vocabulary": vocabulary,
        "extra_weights": extra_names,
        "provenance": provenance or {},
    }
    try:
        return (json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"provenance is not JSON-serializable ({error})") from None


def write_folder(folder: Path, files: dict[str, bytes], tensors: dict[str, np.ndarray]) -> None:
    """Write into a temporary sibling folder, then rename it into place: on any error the
    target is as it was, and the temporary folder is gone."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(
        tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent)
    )
    try:
        for name, content in files.items():
            (partial / name).write_bytes(content)
        save_file(tensors, str(partial / WEIGHTS_FILE), metadata={"format": "pt"})
        partial.chmod(0o755)  # mkdtemp's folder is private to its owner
        check_target_folder(folder)  # again: something may have been written meanwhile
        if folder.is_dir():
            folder.rmdir()  # empty: rename would keep it on some systems
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
