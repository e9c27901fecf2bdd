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
            "decision_rule": "tuned",  # the exports serve tuned thresholds
        },
    }


@pytest.fixture(scope="session")
def export_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def pair_run(export_root) -> Path:
    """A run folder trained 1 epoch on 30 random pair rows (dev: 10 rows)."""
    from xtune.config import parse_run_config
    from xtune.training.trainer import train

    data = export_root / "data"
    data.mkdir()
    rows = random_rows(40, seed=0)
    pd.DataFrame(rows[:30]).to_csv(data / "train.csv", index=False)
    pd.DataFrame(rows[30:]).to_csv(data / "dev.csv", index=False)
    run_dir = export_root / "runs" / "pair"
    train(parse_run_config(tiny_config(data)), run_dir=run_dir)
    return run_dir


@pytest.fixture(scope="session")
def single_run(pair_run, export_root) -> Path:
    """The pair run's folder with `data.text_pair` removed: a single-text run.

    The weights do not depend on how the ids were made, so this is a complete run folder of
    a single-text classifier without a second training.
    """
    run_dir = export_root / "runs" / "single"
    shutil.copytree(pair_run, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    config["data"]["text_pair"] = None
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    return run_dir


@pytest.fixture(scope="session")
def load_trained_run():
    """`load_run` (as a view of its one task), once per run folder for the session."""
    from tests.task_view import load_task_view

    return functools.cache(load_task_view)


# The exports reuse the session's loaded runs: one load and one tokenizer trace per run.


@pytest.fixture(scope="session")
def pair_export(load_trained_run, pair_run, export_root) -> Path:
    from xtune.export.saved_model import export_run

    return export_run(load_trained_run(pair_run).run, export_root / "exports" / "pair").path


@pytest.fixture(scope="session")
def single_export(load_trained_run, single_run, export_root) -> Path:
    from xtune.export.saved_model import export_run

    return export_run(load_trained_run(single_run).run, export_root / "exports" / "single").path


@pytest.fixture(scope="session")
def token_id_export(load_trained_run, pair_run, export_root) -> Path:
    from xtune.export.saved_model import export_token_id_model

    out = export_root / "exports" / "pair_token_ids"
    return export_token_id_model(load_trained_run(pair_run).run, out).path
