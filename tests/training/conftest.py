"""Fixtures for the training tests: a tiny random encoder, a tiny learnable task, run configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from xtune.config import RunConfig, parse_run_config
from xtune.encoders import LoadedEncoder, load_encoder
from xtune.heads import get_head
from xtune.model import build_classifier

TINY_VOCAB = Path(__file__).parent.parent / "fixtures" / "vocab_zh_small.txt"
NUM_LAYERS = 3
NUM_LABELS = 3
# Each label is signalled by one character; the rest of a text is filler.
LABEL_CHARACTERS = {"学习": "学", "港口": "港", "天气": "天"}
FILLER = "一中买了二于享京今他价你全写分北发句在型好子年度我文无是更机格"


def tiny_encoder(dropout: float = 0.0, num_layers: int = NUM_LAYERS) -> LoadedEncoder:
    return load_encoder(
        {
            "name": "random",
            "vocabulary": str(TINY_VOCAB),
            "num_layers": num_layers,
            "num_heads": 2,
            "hidden_dim": 16,
            "intermediate_dim": 32,
            "max_sequence_length": 32,
            "dropout": dropout,
        }
    )


def tiny_classifier(seed: int = 0, **kwargs: Any) -> keras.Model:
    """Encoder + default head + logits, no dropout, weights drawn from `seed`."""
    keras.utils.set_random_seed(seed)
    return build_classifier(
        tiny_encoder(), get_head({"name": "default", "dropout": 0.0}), NUM_LABELS, **kwargs
    )


def tiny_batch(rows: int = 4, length: int = 10, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab_size = sum(1 for _ in TINY_VOCAB.open(encoding="utf-8"))
    token_ids = rng.integers(5, vocab_size, size=(rows, length)).astype("int32")
    token_ids[:, 0] = 2
    token_ids[0, 1:4] = token_ids[1, 1:4]  # repeated tokens: duplicate embedding-gradient rows
    inputs = {
        "token_ids": token_ids,
        "segment_ids": np.zeros((rows, length), "int32"),
        "padding_mask": np.ones((rows, length), "int32"),
    }
    labels = (rng.random((rows, NUM_LABELS)) < 0.5).astype("float32")
    return inputs, labels


def write_task(folder: Path, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(rows):
        labels = [name for name in LABEL_CHARACTERS if rng.random() < 0.4] or ["学习"]
        chars = list(rng.choice(list(FILLER), size=8))
        for name in labels:
            chars.insert(int(rng.integers(0, len(chars))), LABEL_CHARACTERS[name])
        records.append({"text": "".join(chars), "labels": "|".join(labels)})
    path = folder / f"task_{seed}.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("task")
    return write_task(folder, 64, seed=1), write_task(folder, 24, seed=2)


def run_config(tiny_task: tuple[Path, Path], output_dir: Path, **sections: Any) -> RunConfig:
    """A run config for the tiny task; `sections` replace or extend the defaults."""
    train, dev = tiny_task
    raw: dict[str, Any] = {
        "data": {
            "train": str(train),
            "dev": str(dev),
            "max_length": 16,
            "cache_dir": None,
        },
        "encoder": {
            "name": "random",
            "vocabulary": str(TINY_VOCAB),
            "num_layers": NUM_LAYERS,
            "hidden_dim": 16,
            "intermediate_dim": 32,
            "max_sequence_length": 32,
        },
        "head": {"name": "default", "units": [8]},
        "optimizer": {"name": "adamw", "learning_rate": 1e-3},
        "training": {
            "epochs": 2,
            "batch_size": 16,
            "output_dir": str(output_dir),
            "mixed_precision": "float32",
            "jit_compile": False,
            "verbose": 0,
            "checkpoints": False,
            "tune_thresholds": None,
        },
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **value}
        else:
            raw[name] = value
    return parse_run_config(raw, source="test")


def snapshot(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight's value by path (copies)."""
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in model.weights}


def changed_paths(before: dict[str, np.ndarray], model: keras.Model) -> set[str]:
    """Paths whose value differs bitwise from `before`."""
    after = snapshot(model)
    return {path for path, value in before.items() if not np.array_equal(value, after[path])}


def bce() -> keras.losses.Loss:
    return keras.losses.BinaryCrossentropy(from_logits=True)


class LossOnlyTask:
    """The part of a task a training step reads: a name and `compute_loss`."""

    def __init__(self, loss: keras.losses.Loss, name: str = "task"):
        self.name, self.loss = name, loss

    def compute_loss(self, targets, outputs):
        return self.loss(targets, outputs)


def step_model(seed: int = 0, attack=None, loss=None) -> keras.Model:
    """A tiny classifier as a one-task `TaskModel`: its `train_step` is the trainer's."""
    from xtune.training.task_model import TaskModel, TaskStep, step_plan

    model = tiny_classifier(seed=seed, model_class=TaskModel)
    model.plan = step_plan([LossOnlyTask(loss or bce())], [model], [TaskStep(0)], attack)
    return model


def train_once(model: keras.Model, x, y, jit_compile: bool = False) -> dict[str, float]:
    """One compiled training step of a `step_model` on `(x, y)`; its logs as floats."""
    step = tf.function(model.train_step, jit_compile=jit_compile)
    logs = step((tf.constant(0), ((x, tf.constant(y)),)))
    return {name: float(value) for name, value in logs.items()}
