"""Tiny synthetic task files for multi-task tests (written by the tests; words from the tiny
encoder's fixture vocabulary, so every word is one known token)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import tiny_encoder_spec

GOOD = ["love", "super", "hello", "world", "plus", "new"]
BAD = ["not", "force", "mail", "line", "top", "org"]
WORDS = GOOD + BAD + ["the", "and", "you", "are", "what", "can", "club", "cafe", "word", "years"]


def sentiment_rows(rng: np.random.Generator, count: int) -> list[dict]:
    """Label `pos` when the text holds more GOOD than BAD words: learnable from one text."""
    rows = []
    for _ in range(count):
        label = rng.integers(2)
        strong = GOOD if label else BAD
        words = list(rng.choice(strong, 3)) + list(rng.choice(WORDS[12:], 2))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": "pos" if label else "neg"})
    return rows


def paraphrase_rows(rng: np.random.Generator, count: int) -> list[dict]:
    """`same` when the second text is the first reordered, `different` for an unrelated one."""
    rows = []
    for _ in range(count):
        first = list(rng.choice(WORDS, 4, replace=False))
        same = rng.integers(2)
        second = list(rng.permutation(first)) if same else list(rng.choice(WORDS, 4, replace=False))
        rows.append({"text": " ".join(first), "text_pair": " ".join(second),
                     "labels": "same" if same else "different"})  # fmt: skip
    return rows


def similarity_rows(rng: np.random.Generator, count: int) -> list[dict]:
    """Score 0-5: 5 x the share of the first text's 4 words that the second text keeps."""
    rows = []
    for _ in range(count):
        first = list(rng.choice(WORDS, 4, replace=False))
        kept = int(rng.integers(0, 5))
        others = [w for w in WORDS if w not in first]
        second = first[:kept] + list(rng.choice(others, 4 - kept, replace=False))
        rng.shuffle(second)
        rows.append({"text": " ".join(first), "text_pair": " ".join(second),
                     "labels": f"{5 * kept / 4:.2f}"})  # fmt: skip
    return rows


def write_task_files(folder: Path, name: str, rows_of, train: int = 96, dev: int = 48) -> dict:
    """train/dev CSVs of one synthetic task; returns its `data:` section."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    paths = {}
    for split, count in (("train", train), ("dev", dev)):
        paths[split] = folder / f"{name}-{split}.csv"
        pd.DataFrame(rows_of(rng, count)).to_csv(paths[split], index=False)
    data = {"train": str(paths["train"]), "dev": str(paths["dev"])}
    if "pair" in name or name in ("paraphrase", "similarity", "sts"):
        data["text_pair"] = "text_pair"
    return data


def multitask_config(tmp_path: Path, tasks: dict, **training) -> dict:
    """A raw multi-task config over the tiny random encoder."""
    return {
        "data": {"max_length": 16, "cache_dir": str(tmp_path / "cache")},
        "encoder": tiny_encoder_spec(),
        "head": {"name": "pooling", "pooling": "mean"},
        "optimizer": {"name": "adamw", "learning_rate": 3e-3},
        "training": {
            "epochs": 2,
            "batch_size": 16,
            "mixed_precision": "float32",
            "verbose": 0,
            "checkpoints": False,
            "output_dir": str(tmp_path / "runs"),
            **training,
        },
        "tasks": tasks,
    }


def three_tasks(tmp_path: Path) -> dict:
    """sentiment (classification), paraphrase (cross-encoder), sts (bi-encoder cosine)."""
    return {
        "sentiment": {
            "type": "classification",
            "data": write_task_files(tmp_path, "sentiment", sentiment_rows),
            "loss": "softmax_ce",
        },
        "paraphrase": {
            "type": "pair_classification",
            "data": write_task_files(tmp_path, "paraphrase", paraphrase_rows),
        },
        "sts": {
            "type": "bi_encoder",
            "output": "cosine",
            "loss": "cosent",
            "data": write_task_files(tmp_path, "sts", similarity_rows),
        },
    }


@functools.cache
def shared_three_tasks() -> tuple[Path, dict]:
    """`three_tasks` written once per test process, with one token cache beside them: the
    test modules that train on them tokenize each split once (later runs hit the cache)."""
    folder = Path(tempfile.mkdtemp(prefix="xtune-task-files-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder, three_tasks(folder)
