"""Shared helpers of the HF family tests: fixture folders (tools/make_tiny_hf_*.py) and their
reference outputs from transformers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hf_tiny"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def folder_with_only(variant: str, weights: str, tmp_path: Path) -> Path:
    """A copy of the fixture folder holding one of the two weight files."""
    folder = tmp_path / variant
    shutil.copytree(FIXTURES / variant, folder)
    for name in WEIGHT_FILES:
        if name != weights:
            (folder / name).unlink()
    return folder


def reference(variant: str) -> dict[str, np.ndarray]:
    """The fixture's reference.npz (transformers' outputs and ids) as plain arrays."""
    with np.load(FIXTURES / variant / "reference.npz") as data:
        return {key: data[key] for key in data.files}


def as_lists(ids) -> list[list[int]]:
    """Token ids as lists of rows, from a ragged tensor or a dense array alike."""
    return ids.to_list() if hasattr(ids, "to_list") else [list(row) for row in ids]
