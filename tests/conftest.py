"""Shared fixtures: tiny random encoders and small tables written to tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
SAMPLE = REPO / "data" / "sample_appeals"
TINY_VOCAB = FIXTURES / "vocab_zh_small.txt"


def tiny_encoder_spec(**overrides) -> dict:
    """A 2-layer, hidden-32 random BERT over the small Chinese fixture vocabulary."""
    spec = {
        "name": "random",
        "vocabulary": str(TINY_VOCAB),
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 32,
        "intermediate_dim": 64,
        "max_sequence_length": 128,
    }
    spec.update(overrides)
    return spec


def sample_run_config(tmp_path: Path, **sections) -> dict:
    """A raw run config on the bundled sample with a tiny encoder; sections override."""
    raw = {
        "data": {
            "train": str(SAMPLE / "train.csv"),
            "dev": str(SAMPLE / "dev.csv"),
            "text": "body",
            "text_pair": "title",
            "labels": "labels",
            "max_length": 48,
            "cache_dir": str(tmp_path / "cache"),
        },
        "encoder": tiny_encoder_spec(),
        "head": {"name": "pooling", "pooling": "mean"},
        "optimizer": {"name": "adamw", "learning_rate": 1e-3},
        "training": {
            "epochs": 1,
            "batch_size": 32,
            "mixed_precision": "float32",
            "verbose": 0,
            "output_dir": str(tmp_path / "runs"),
        },
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **values}
        else:
            raw[name] = values
    return raw


@pytest.fixture
def write_csv(tmp_path):
    """Write rows (list of dicts) to a CSV in tmp_path and return its path."""
    import pandas as pd

    def write(name: str, rows: list[dict]) -> Path:
        path = tmp_path / name
        pd.DataFrame(rows).to_csv(path, index=False)
        return path

    return write
