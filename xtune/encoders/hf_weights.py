"""A Hugging Face folder's weights as `{name: np.ndarray}`: safetensors first, else `.bin`.

Sharded checkpoints (`*.index.json` + shards) are read too. A `.bin` goes through
`torch_pickle`, so no torch is needed and no code inside it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from xtune.encoders.adapter import EncoderLoadError
from xtune.encoders.checkpoint_files import check_finite_tensors
from xtune.encoders.torch_pickle import WeightsFormatError, read_torch_state_dict

# In preference order: (single file, index of shards, reader).
WEIGHTS_FILES = (
    ("model.safetensors", "model.safetensors.index.json", "safetensors"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", "torch"),
)


def read_hf_weights(folder: str | Path) -> dict[str, np.ndarray]:
    """All tensors of the folder's checkpoint, by their Hugging Face names.

    `model.safetensors` is preferred, then `pytorch_model.bin` (read without torch);
    old `LayerNorm.gamma`/`.beta` names become `.weight`/`.bias` as transformers does.
    """
    folder = Path(folder).expanduser()
    for single, index, reader in WEIGHTS_FILES:
        if (folder / single).is_file():
            return normalize_names(read_weights_file(folder / single, reader))
        if (folder / index).is_file():
            return normalize_names(read_sharded(folder / index, reader))
    raise EncoderLoadError(
        f"{folder}: no weights file; expected model.safetensors or pytorch_model.bin "
        "(or their sharded *.index.json)"
    )


def weights_file_name(folder: Path) -> str:
    """The file (or index of shards) `read_hf_weights` reads from `folder`."""
    for single, index, _reader in WEIGHTS_FILES:
        for name in (single, index):
            if (Path(folder) / name).is_file():
                return name
    return "weights file"


def read_weights_file(path: Path, reader: str) -> dict[str, np.ndarray]:
    if reader == "torch":  # safetensors files were checked by `check_weights_files`
        weights = read_torch_state_dict(path)
        check_finite_tensors(weights, path)
        return weights
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own SafetensorError
        raise WeightsFormatError(f"{path}: not a readable safetensors file ({error})") from None


def read_sharded(index: Path, reader: str) -> dict[str, np.ndarray]:
    """`weight_map` of an index names the shard of every tensor; read each shard once."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise EncoderLoadError(f"{index}: not a checkpoint index ({error})") from None
    weights: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        path = index.parent / shard
        if Path(shard).name != shard or not path.is_file():
            raise EncoderLoadError(f"{index}: shard {shard!r} is missing from {index.parent}")
        weights.update(read_weights_file(path, reader))
    return weights


def normalize_names(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Old checkpoints name LayerNorm parameters `gamma`/`beta`; transformers renames them."""
    renamed = {}
    for name, value in weights.items():
        if "LayerNorm." in name and name.endswith(".gamma"):
            name = name[: -len("gamma")] + "weight"
        elif "LayerNorm." in name and name.endswith(".beta"):
            name = name[: -len("beta")] + "bias"
        renamed[name] = value
    return renamed


def strip_prefix(weights: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The base model's tensors without the `<prefix>.` a task head model adds.

    `RobertaForMaskedLM` saves `roberta.encoder...` (plus `lm_head.*`), `RobertaModel` saves
    `encoder...`: if any name starts with the prefix, keep only those names, stripped.
    """
    marker = f"{prefix}."
    if not any(name.startswith(marker) for name in weights):
        return dict(weights)
    return {
        name[len(marker) :]: value for name, value in weights.items() if name.startswith(marker)
    }


__all__ = ["read_hf_weights", "strip_prefix"]
