"""Read a PyTorch `pytorch_model.bin` state dict into numpy arrays without torch, safely.

A `.bin` is a pickle, and unpickling runs whatever callables it names: `torch.load` with
`weights_only=False` (or plain `pickle`) executes code hidden in a downloaded checkpoint.
`TorchWeightsUnpickler` resolves only the globals a state dict needs (the tensor-rebuild
functions, the storage types, `OrderedDict`) to local stand-ins that build numpy arrays, and
refuses every other global before anything is called.

Both of torch's formats are read: the zip archive of torch >= 1.6 (`<name>/data.pkl` plus one
`<name>/data/<key>` record per storage) and the legacy stream of older torch (magic number,
protocol, system info, the pickle, the storage keys, then each storage's raw bytes), which
many Chinese checkpoints from 2019-2020 still use.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from xtune.encoders.adapter import EncoderLoadError

# torch's legacy-format magic number (torch/serialization.py MAGIC_NUMBER).
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

# The storage classes a state dict's pickle names, by their numpy element type.
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}

# `torch.<dtype>` globals: `_rebuild_tensor_v3` (newer dtypes) names the tensor's dtype.
TORCH_DTYPES = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}


class UnsafeWeightsError(EncoderLoadError):
    """A weights file's pickle names something other than tensors: it could run code."""


class WeightsFormatError(EncoderLoadError):
    """A weights file is not a readable PyTorch state dict."""


class StorageType:
    """Stand-in for `torch.FloatStorage` & co.: only carries the element type."""

    def __init__(self, name: str, dtype: np.dtype):
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class TorchDtype:
    """Stand-in for a `torch.<dtype>` object named by `_rebuild_tensor_v3`."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


def rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2`: a strided view of a storage (copied out at the end)."""
    return strided_view(storage, storage_offset, size, stride)


def rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, hooks, dtype, metadata=None
) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v3`: like v2 over an untyped (byte) storage plus a dtype."""
    if not isinstance(dtype, TorchDtype) or not isinstance(storage, np.ndarray):
        raise WeightsFormatError("_rebuild_tensor_v3 without a storage and a dtype")
    return strided_view(storage.view(dtype.dtype), storage_offset, size, stride)


def rebuild_parameter(data, *_ignored) -> np.ndarray:
    """`torch._utils._rebuild_parameter(_with_state)`: a Parameter is just its tensor here."""
    return data


def strided_view(storage: Any, offset: int, size: Any, stride: Any) -> np.ndarray:
    """The view `storage[offset + sum(index * stride)]` of shape `size`.

    The bounds are checked first: `as_strided` trusts its arguments, so a crafted file
    could otherwise read memory outside the storage. It stays a view because the legacy
    format's storage bytes are filled in after the pickle is read.
    """
    if not isinstance(storage, np.ndarray):
        raise WeightsFormatError(f"a tensor's storage is a {type(storage).__name__}")
    size, stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)
    offset = int(offset)
    if len(size) != len(stride) or min((offset, *size, *stride), default=0) < 0:
        raise WeightsFormatError(f"bad tensor layout: size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise WeightsFormatError(
            f"a tensor reaches element {last} of a storage of {storage.size} elements"
        )
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )


# Every global a state dict may name, mapped to what stands in for it. The `torch._utils`
# names are strings the pickle holds, matched here; torch itself is never imported or called.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
    ("torch.storage", "UntypedStorage"): StorageType("UntypedStorage", np.dtype(np.uint8)),
    **{("torch", name): TorchDtype(dtype) for name, dtype in TORCH_DTYPES.items()},
}

# How refused globals are named in the error (pickle records `os.system` as `posix.system`).
SHOWN_AS = {("posix", "system"): "os.system", ("nt", "system"): "os.system"}


class TorchWeightsUnpickler(pickle.Unpickler):
    """Unpickles a state dict; any global outside `ALLOWED_GLOBALS` is refused, not called."""

    def __init__(self, file: BinaryIO, source: str, load_storage):
        super().__init__(file)
        self.source = source
        self.load_storage = load_storage  # (dtype, key, numel, view) -> 1-d np.ndarray

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        shown = SHOWN_AS.get((module, name), f"{module}.{name}")
        raise UnsafeWeightsError(
            f"{self.source}: refuses to load: it calls {shown}; a weights file must hold "
            "only tensors (torch.load(weights_only=False) or pickle would have run it)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsFormatError(f"{self.source}: unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, StorageType):
            raise WeightsFormatError(f"{self.source}: unknown storage type {storage_type!r}")
        view = pid[5] if len(pid) > 5 else None
        return self.load_storage(storage_type.dtype, str(key), int(numel), view)


def unpickle(file: BinaryIO, path: Path, load_storage) -> Any:
    """Run the restricted unpickler; a damaged stream is a `WeightsFormatError`."""
    try:
        return TorchWeightsUnpickler(file, str(path), load_storage).load()
    except (UnsafeWeightsError, WeightsFormatError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as error:
        raise WeightsFormatError(f"{path}: not a readable PyTorch checkpoint ({error})") from None


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A `pytorch_model.bin` (zip or legacy format) -> `{name: array}`, never running its code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFormatError(f"{path}: weights file not found")
    if zipfile.is_zipfile(path):
        state = read_zip_format(path)
    elif path.read_bytes()[:4] == b"PK\x03\x04":
        raise WeightsFormatError(
            f"{path}: a zip archive without its directory: the file is truncated; expected a "
            "whole PyTorch checkpoint"
        )
    else:
        state = read_legacy_format(path)
    return check_state_dict(state, path)


def read_zip_format(path: Path) -> Any:
    """torch >= 1.6: `<name>/data.pkl` and one raw `<name>/data/<key>` record per storage."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise WeightsFormatError(
                f"{path}: not a PyTorch checkpoint archive (expected one data.pkl, found "
                f"{len(pickles)})"
            )
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() == b"big":
            raise WeightsFormatError(f"{path}: big-endian checkpoints are not supported")
        storages: dict[str, np.ndarray] = {}

        def load_storage(dtype: np.dtype, key: str, numel: int, view: Any) -> np.ndarray:
            if key not in storages:
                try:
                    storages[key] = np.frombuffer(archive.read(f"{prefix}data/{key}"), np.uint8)
                except KeyError:
                    raise WeightsFormatError(f"{path}: storage data/{key} is missing") from None
            raw = storages[key]
            if raw.size % dtype.itemsize:
                raise WeightsFormatError(f"{path}: storage data/{key} is not a whole {dtype}")
            return raw.view(dtype)

        with archive.open(pickles[0]) as file:
            return unpickle(file, path, load_storage)


def read_legacy_format(path: Path) -> Any:
    """torch < 1.6's stream: header pickles, the main pickle, storage keys, raw storages.

    The storage bytes come after the pickle, so storages start empty and are filled in
    place afterwards; the tensors rebuilt meanwhile are views of them.
    """
    with path.open("rb") as file:
        if unpickle(file, path, no_storage(path)) != LEGACY_MAGIC_NUMBER:
            raise WeightsFormatError(
                f"{path}: not a PyTorch checkpoint (neither a zip archive nor torch's "
                "legacy format)"
            )
        unpickle(file, path, no_storage(path))  # protocol version
        sys_info = unpickle(file, path, no_storage(path))
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise WeightsFormatError(f"{path}: big-endian checkpoints are not supported")
        roots: dict[str, np.ndarray] = {}
        size = path.stat().st_size

        def load_storage(dtype: np.dtype, key: str, numel: int, view: Any) -> np.ndarray:
            if key not in roots:
                # The storages follow the pickle in the file: one that the file cannot hold
                # is refused before its memory is allocated.
                declared = sum(root.nbytes for root in roots.values()) + numel * dtype.itemsize
                if numel < 0 or declared > size:
                    raise WeightsFormatError(
                        f"{path}: storage {key} declares {numel} elements of {dtype} "
                        f"({numel * dtype.itemsize} bytes), more than the file's {size} bytes; "
                        "the file is truncated or damaged"
                    )
                roots[key] = np.zeros(numel, dtype=dtype)
            root = roots[key]
            if view is None:
                return root
            _view_key, offset, view_numel = view  # torch <= 1.0 saved storage slices
            return root[int(offset) : int(offset) + int(view_numel)]

        state = unpickle(file, path, load_storage)
        keys = unpickle(file, path, no_storage(path))
        if not isinstance(keys, list):
            raise WeightsFormatError(f"{path}: the storage key list is missing")
        for key in keys:
            (numel,) = struct.unpack("<q", read_exactly(file, 8, path))
            root = roots.get(str(key))
            if root is None or numel != root.size:
                raise WeightsFormatError(f"{path}: storage {key} does not match the pickle")
            root[...] = np.frombuffer(read_exactly(file, numel * root.itemsize, path), root.dtype)
    return state


def no_storage(path: Path):
    def refuse(*_args):
        raise WeightsFormatError(f"{path}: storage reference in a legacy header")

    return refuse


def read_exactly(file: BinaryIO, count: int, path: Path) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise WeightsFormatError(f"{path}: truncated (expected {count} more bytes)")
    return data


def check_state_dict(state: Any, path: Path) -> dict[str, np.ndarray]:
    """The unpickled object must be a flat `{name: tensor}` mapping; copy each tensor out."""
    if not isinstance(state, dict):
        raise WeightsFormatError(
            f"{path}: holds a {type(state).__name__}, expected a state dict of tensors"
        )
    weights = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise WeightsFormatError(
                f"{path}: entry {name!r} is a {type(value).__name__}, expected a tensor"
            )
        weights[name] = np.array(value, copy=True, order="C")  # own, contiguous, writeable
    return weights


__all__ = ["UnsafeWeightsError", "WeightsFormatError", "read_torch_state_dict"]
