"""experiments/demo_hierarchy.yaml on the bundled sample's `label_path` (a tiny random encoder
in place of MiniLM, one epoch): it trains, and every path it predicts is in the committed
taxonomy.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, SAMPLE, tiny_encoder_spec

CONFIG = REPO / "experiments" / "demo_hierarchy.yaml"


def tiny_demo_config(folder: Path) -> dict:
    """The demo config as it is, but for the encoder, the length and the run's length."""
    raw = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    raw["data"].update(
        root=str(REPO), max_length=48, head_tokens=16, padding="fixed", cache_dir=str(folder)
    )
    raw["encoder"] = tiny_encoder_spec(num_layers=1)
    raw["training"].update(
        epochs=1,
        batch_size=32,
        mixed_precision="float32",
        jit_compile=False,
        verbose=0,
        output_dir=str(folder / "runs"),
        run_name="demo_hierarchy",
        checkpoints=False,
    )
    return raw


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    from xtune.config import parse_run_config
    from xtune.training.trainer import train

    folder = tmp_path_factory.mktemp("demo_hierarchy")
    result = train(parse_run_config(tiny_demo_config(folder), source=str(CONFIG)))
    for key in ("hierarchical_f1", "consistency", "level_1_accuracy", "level_3_macro_f1"):
        assert 0.0 <= result.best[key] <= 1.0
    return result.run_dir


def test_the_demo_config_trains_the_sample_paths_on_the_committed_taxonomy():
    raw = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert raw["data"]["labels"] == "label_path"
    assert raw["hierarchy"]["mode"] == "per_level"  # best-path decoding: the test below
    assert REPO / raw["data"]["label_hierarchy"] == SAMPLE / "taxonomy.csv"


def test_every_predicted_path_is_in_the_committed_taxonomy(demo_run, tmp_path):
    from xtune.data.hierarchy import read_label_tree
    from xtune.export.predict import predict_file

    tree = read_label_tree(SAMPLE / "taxonomy.csv", "/")
    output = tmp_path / "predicted.csv"
    predict_file(demo_run, SAMPLE / "dev.csv", output, verbose=0)
    table = pd.read_csv(output, keep_default_na=False)
    assert len(table) == 120 and (table["error"] == "").all()
    for paths, *levels in zip(
        table["predicted_paths"], table["level_1"], table["level_2"], table["level_3"],
        strict=True,
    ):  # fmt: skip
        (path,) = paths.split("|")  # best-path decoding: one full path a row
        assert path in tree and not tree.children_of(path)  # a leaf of taxonomy.csv
        assert "/".join(levels) == path
