"""Shared fixtures: tiny random encoders and small tables written to tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import xtune  # noqa: F401  (its TensorFlow settings, before any test module imports TensorFlow)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
SAMPLE = REPO / "data" / "sample_appeals"
TINY_VOCAB = FIXTURES / "vocab_zh_small.txt"


def pytest_collection_modifyitems(items):
    """Modules with `large` tests first, then those marked `heavy`, the rest after (stable):
    the pytest-xdist workers start on the longest tests instead of ending on them."""
    rank: dict[str, int] = {}
    for item in items:
        name = item.module.__name__
        mark = (
            0 if item.get_closest_marker("large") else 1 if item.get_closest_marker("heavy") else 2
        )
        rank[name] = min(rank.get(name, 2), mark)
    items.sort(key=lambda item: rank[item.module.__name__])


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
            "checkpoints": False,  # tests/reliability/test_resume.py turns them on
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


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
    """`built_once(name, build)`: the folder `build(folder)` filled, built once per test session
    and shared by every module that reads it, across pytest-xdist workers too (the first
    worker builds it under a file lock in the session's shared temp folder; the others wait,
    then read it). Readers must not change it."""
    import shutil

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers' base temp folders share

    def build_folder(name: str, build) -> Path:
        folder = root / "built-once" / name
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not (folder / ".built").is_file():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                build(folder)
                (folder / ".built").touch()
        return folder

    return build_folder


@pytest.fixture(scope="session")
def three_task_run(built_once) -> Path:
    """The shared three tasks (sentiment: classification, paraphrase: cross-encoder, sts:
    bi-encoder cosine) trained 3 steps: a multi-task run folder for the tests that read one."""

    def build(folder: Path) -> None:
        from tests.tasks.task_data import multitask_config, three_tasks
        from xtune.config import parse_run_config
        from xtune.training.trainer import train

        (folder / "data").mkdir()
        raw = multitask_config(folder, three_tasks(folder / "data"), epochs=1, steps_per_epoch=3)
        raw["data"]["padding"] = "fixed"  # one shape a task: few traces
        train(parse_run_config(raw), run_dir=folder / "run")

    return built_once("three_task_run", build) / "run"


@pytest.fixture(scope="session")
def three_task_export(built_once, three_task_run) -> Path:
    """`three_task_run` exported (`export_run`): its SavedModel folder."""

    def build(folder: Path) -> None:
        from xtune.export.saved_model import export_run

        export_run(three_task_run, folder / "export")

    return built_once("three_task_export", build) / "export"
