"""One tiny trained pair run for the whole session, a single-text twin, and their exports."""

from __future__ import annotations

import functools
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

FIXTURES = Path(__file__).parent.parent / "fixtures"
MAX_LENGTH = 24
HEAD_TOKENS = 8
LABELS = ["交通", "环境", "教育"]
# Characters that are whole tokens of the fixture vocabulary, so texts are mostly not [UNK].
CHARACTERS = (
    "一中习买了二于享京今他价你全写分剧北博发句吕吗含呢国在型堂处天好子学宠属巷布年度很意"
    "我是更机東格案模气注深港灣然燃爱理的真空第答级网自言论说谢这里问领题香"
)


def random_rows(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(low, high)))

    return [
        {
            "body": text(5, 60),
            "title": text(2, 10),
            "labels": "|".join(rng.sample(LABELS, rng.randint(1, 2))),
        }
        for _ in range(count)
    ]


def tiny_config(folder: Path) -> dict:
    """A 1-layer, hidden-16 random BERT on pairs, head+tail truncation to 24 tokens."""
    return {
        "data": {
            "train": str(folder / "train.csv"),
            "dev": str(folder / "dev.csv"),
            "text": "body",
            "text_pair": "title",
            "labels": "labels",
            "max_length": MAX_LENGTH,
            "truncation": "head_tail",
            "head_tokens": HEAD_TOKENS,
            "padding": "fixed",  # one input shape: one trace of the train step
            "cache_dir": None,
        },
        "encoder": {
            "name": "random",
            "vocabulary": str(FIXTURES / "vocab_zh_small.txt"),
            "num_layers": 1,
            "hidden_dim": 16,
            "num_heads": 2,
            "intermediate_dim": 32,
            "max_sequence_length": 64,
        },
        "training": {
            "epochs": 1,
            "batch_size": 8,
            "mixed_precision": "float32",
            "jit_compile": False,
            "verbose": 0,
            "checkpoints": False,
            "decision_rule": "tuned",  # the exports serve tuned thresholds
        },
    }


# Built once per test session, across pytest-xdist workers too (`built_once`, tests/conftest.py).


@pytest.fixture(scope="session")
def pair_run(built_once) -> Path:
    """A run folder trained 1 epoch on 30 random pair rows (dev: 10 rows)."""

    def build(folder: Path) -> None:
        from xtune.config import parse_run_config
        from xtune.training.trainer import train

        data = folder / "data"
        data.mkdir()
        rows = random_rows(40, seed=0)
        pd.DataFrame(rows[:30]).to_csv(data / "train.csv", index=False)
        pd.DataFrame(rows[30:]).to_csv(data / "dev.csv", index=False)
        train(parse_run_config(tiny_config(data)), run_dir=folder / "run")

    return built_once("pair_run", build) / "run"


@pytest.fixture(scope="session")
def single_run(built_once, pair_run) -> Path:
    """The pair run's folder with `data.text_pair` removed: a single-text run.

    The weights do not depend on how the ids were made, so this is a complete run folder of
    a single-text classifier without a second training.
    """

    def build(folder: Path) -> None:
        run_dir = shutil.copytree(pair_run, folder / "run")
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        config["data"]["text_pair"] = None
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")

    return built_once("single_run", build) / "run"


@pytest.fixture(scope="session")
def load_trained_run():
    """`load_run` (as a view of its one task), once per run folder for the session."""
    from tests.task_view import load_task_view

    return functools.cache(load_task_view)


# The exports reuse the session's loaded runs: one load and one tokenizer trace per run.


def built_export(built_once, name: str, export) -> Path:
    """`export(out_dir)` built once per session (see `built_once`): the export folder."""
    return built_once(name, lambda folder: export(folder / "export")) / "export"


@pytest.fixture(scope="session")
def pair_export(built_once, load_trained_run, pair_run) -> Path:
    from xtune.export.saved_model import export_run

    return built_export(
        built_once, "pair_export", lambda out: export_run(load_trained_run(pair_run).run, out)
    )


@pytest.fixture(scope="session")
def single_export(built_once, load_trained_run, single_run) -> Path:
    from xtune.export.saved_model import export_run

    return built_export(
        built_once, "single_export", lambda out: export_run(load_trained_run(single_run).run, out)
    )


@pytest.fixture(scope="session")
def token_id_export(built_once, load_trained_run, pair_run) -> Path:
    from xtune.export.saved_model import export_token_id_model

    return built_export(
        built_once,
        "pair_token_id_export",
        lambda out: export_token_id_model(load_trained_run(pair_run).run, out),
    )
