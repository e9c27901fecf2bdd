"""Check a Hugging Face checkpoint folder's files before any tensor is allocated.

A folder a user brings may hold anything: a config.json that is not JSON, a truncated
`model.safetensors`, weights with NaN in them. Each check ends in one `EncoderLoadError`
naming the file, what is wrong and what was expected; nothing here builds a model. The
safetensors checks read the header (8-byte length, JSON of dtypes, shapes and byte ranges)
and compare it with the file's length; the tensors' values are read through a memory map.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from xtune.encoders.adapter import EncoderLoadError

log = logging.getLogger(__name__)

# safetensors' dtype names -> numpy element types.
SAFETENSORS_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
# Vocabulary files, in the order a family reads them: the one an error names.
VOCABULARY_FILES = (
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.json",
)


def read_json_object(path: Path, expected: str = "a JSON object") -> dict[str, Any]:
    """A UTF-8 JSON object file, or one error saying why it is not."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw[:3] == b"\xef\xbb\xbf":
        raise EncoderLoadError(
            f"{path}: starts with a byte-order mark (UTF-16 or UTF-8 with BOM); expected "
            f"{expected} saved as plain UTF-8"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EncoderLoadError(
            f"{path}: byte {error.start} is not valid UTF-8; expected {expected} saved as UTF-8"
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise EncoderLoadError(
            f"{path}: not valid JSON (line {error.lineno} column {error.colno}: {error.msg}); "
            f"expected {expected}"
        ) from None
    if not isinstance(value, dict):
        raise EncoderLoadError(f"{path}: holds a JSON {json_kind(value)}; expected {expected}")
    return value


def json_kind(value: Any) -> str:
    names = {list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def check_finite_tensors(weights: dict[str, np.ndarray], path: Path) -> None:
    """Every floating-point tensor of a read weights file is finite."""
    for name, values in weights.items():
        check_finite(values, name, path)


def read_checkpoint_config(folder: Path, model_types: list[str]) -> dict[str, Any]:
    """config.json as an object with a string `model_type` among `model_types`."""
    path = folder / "config.json"
    config = read_json_object(path, "the model's configuration object")
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        named = config.get("architectures")
        hint = f" (its architectures: {', '.join(map(str, named))})" if named else ""
        what = "no" if model_type is None else f"a non-string ({model_type!r})"
        raise EncoderLoadError(
            f'{path}: {what} "model_type"{hint}; expected one of {", ".join(model_types)}, '
            'e.g. "model_type": "bert"'
        )
    return config


def check_safetensors(path: Path) -> None:
    """The header's byte ranges fit the file, match each tensor's shape and dtype, and every
    floating-point tensor is finite; nothing is loaded but a memory map."""
    size = path.stat().st_size
    if size < 8:
        raise EncoderLoadError(
            f"{path}: {size} bytes, shorter than safetensors' 8-byte header length; the file "
            "is truncated or not a safetensors file"
        )
    with path.open("rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        if header_length > size - 8:
            raise EncoderLoadError(
                f"{path}: the header declares {header_length} bytes, the file holds "
                f"{size - 8} after the length field; the file is truncated or not a "
                "safetensors file"
            )
        header_bytes = file.read(header_length)
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EncoderLoadError(f"{path}: the header is not JSON; not a safetensors file") from None
    if not isinstance(header, dict):
        raise EncoderLoadError(f"{path}: the header is not a JSON object; not a safetensors file")
    data_start, data_length = 8 + header_length, size - 8 - header_length
    tensors = {name: info for name, info in header.items() if name != "__metadata__"}
    for name, info in tensors.items():
        dtype, shape, begin, end = tensor_layout(path, name, info)
        needed = math.prod(shape) * dtype.itemsize
        if end - begin != needed:
            raise EncoderLoadError(
                f"{path}: tensor {name!r} of shape {list(shape)} ({info['dtype']}) needs "
                f"{needed} bytes, its byte range [{begin}, {end}) holds {end - begin}"
            )
        if end > data_length:
            raise EncoderLoadError(
                f"{path}: truncated: tensor {name!r} ends at byte {data_start + end}, the file "
                f"has {size} bytes"
            )
    check_finite_safetensors(path, tensors, data_start)


def tensor_layout(path: Path, name: str, info: Any) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, or an error naming the tensor."""
    try:
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        numbers = (*shape, begin, end)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise ValueError
        if begin > end:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise EncoderLoadError(
            f"{path}: tensor {name!r} has a malformed header entry {str(info)[:120]}; expected "
            f"dtype (one of {', '.join(SAFETENSORS_DTYPES)}), shape and data_offsets"
        ) from None
    return dtype, shape, begin, end


def check_finite_safetensors(path: Path, tensors: dict[str, Any], data_start: int) -> None:
    if path.stat().st_size == data_start:
        return
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start)
    for name, info in tensors.items():
        if info["dtype"] in FLOAT_DTYPES:
            begin, end = info["data_offsets"]
            check_finite(data[begin:end].view(SAFETENSORS_DTYPES[info["dtype"]]), name, path)


def check_finite(values: np.ndarray, name: str, path: Path) -> None:
    """One error naming the tensor when any of its values is NaN or infinite."""
    if values.dtype.kind not in "fcV":  # integers and booleans are always finite
        return
    bad = values.size - int(np.count_nonzero(np.isfinite(values)))
    if bad:
        raise EncoderLoadError(
            f"{path}: tensor {name!r} holds {bad} non-finite value(s) (NaN or "
            f"infinity) among its {values.size}; expected finite weights (the file is damaged)"
        )


def check_weights_files(folder: Path) -> None:
    """The safetensors file(s) the folder would be read from (single or sharded), checked."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        check_safetensors(single)
    elif index.is_file():
        weight_map = read_json_object(index, "a checkpoint index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise EncoderLoadError(f'{index}: no "weight_map" object; not a checkpoint index')
        for shard in sorted(set(map(str, weight_map.values()))):
            path = folder / shard
            if Path(shard).name == shard and path.is_file():
                check_safetensors(path)


def vocabulary_file(folder: Path) -> str:
    for name in VOCABULARY_FILES:
        if (folder / name).is_file():
            return name
    return "the tokenizer"


def check_vocabulary_size(folder: Path, tokens: int, rows: int) -> None:
    """A vocabulary longer than the word embedding is refused (its extra ids would index past
    the table mid-training); a shorter one is a warning (padded embeddings are common)."""
    name = vocabulary_file(folder)
    if tokens > rows:
        raise EncoderLoadError(
            f"{folder / name}: {tokens} tokens, but the word embedding has {rows} rows; ids "
            f"{rows}..{tokens - 1} would index past it: expected at most {rows} tokens (is this "
            "the vocabulary of these weights?)"
        )
    if tokens < rows:
        log.warning(
            "warning: %s: %d tokens for a word embedding of %d rows; rows %d..%d are never "
            "used (fine for a padded embedding; otherwise check the vocabulary belongs to "
            "these weights)",
            folder / name,
            tokens,
            rows,
            tokens,
            rows - 1,
        )


__all__ = [
    "check_finite_tensors",
    "check_vocabulary_size",
    "check_weights_files",
    "read_checkpoint_config",
    "read_json_object",
]
