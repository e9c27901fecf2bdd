"""A tiny run with a label hierarchy trains, exports, and the export and `xtune predict`
return the same paths as in-framework prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import tiny_encoder_spec
from tests.hierarchy.tree_data import PATHS, rows, write_tree_files
from xtune.config import ConfigError, parse_run_config
from xtune.data.readers import DataError


def config(folder: Path, mode: str, **hierarchy) -> dict:
    return {
        "data": {
            "train": str(folder / "train.csv"),
            "dev": str(folder / "dev.csv"),
            "label_hierarchy": str(folder / "tree.txt"),
            "max_length": 16,
            "padding": "fixed",
            "cache_dir": None,
        },
        "encoder": tiny_encoder_spec(
            num_layers=1, hidden_dim=16, intermediate_dim=32, max_sequence_length=32
        ),
        "loss": "softmax_ce" if mode == "leaves" else "bce",
        "optimizer": {"name": "adamw", "learning_rate": 3e-3},
        "hierarchy": {"mode": mode, **hierarchy},
        "training": {
            "epochs": 1,
            "batch_size": 16,
            "mixed_precision": "float32",
            "jit_compile": False,
            # A one-epoch tiny model scores dev rows within 1e-7 of each other; a threshold
            # tuned between two of them flips with float noise in the export check.
            "tune_thresholds": None,
            "verbose": 0,
            "checkpoints": False,
            "output_dir": str(folder / "runs"),
            "run_name": mode,
        },
    }


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hierarchy")
    write_tree_files(folder)
    return folder


def consistent(labels: list[str]) -> bool:
    return all(label.rsplit("/", 1)[0] in labels for label in labels if "/" in label)


@pytest.fixture(scope="module")
def coherent_run(data_folder) -> Path:
    from xtune.training.trainer import train

    result = train(parse_run_config(config(data_folder, "coherent")))
    assert result.best["consistency"] == 1.0  # C-HMCNN's scores are coherent by construction
    for key in ("hierarchical_f1", "level_1_accuracy", "level_3_macro_f1", "subset_accuracy"):
        assert 0.0 <= result.best[key] <= 1.0
    return result.run_dir


def test_export_and_predict_return_the_in_framework_paths(coherent_run, data_folder, tmp_path):
    """The export's check compares every output, `paths` and `level_labels` included, with
    the in-framework model's on the dev rows (an ExportError otherwise); predict on the export
    writes those paths (`path_columns` is `serving_outputs`' rule: the test below)."""
    from xtune.export.predict import RunFolderPredictor, predict_file
    from xtune.export.saved_model import export_run

    export = export_run(coherent_run, tmp_path / "export")
    assert export.metadata["check"]["strings"] >= 10  # the fixed strings and dev rows
    assert export.metadata["tasks"]["default"]["hierarchy"]["mode"] == "coherent"
    assert RunFolderPredictor(coherent_run, None).hierarchy == {
        "mode": "coherent", "separator": "/", "levels": 3, "decoding": "threshold"
    }  # fmt: skip
    output = tmp_path / "predicted.csv"
    predict_file(tmp_path / "export", data_folder / "dev.csv", output, verbose=0)
    table = pd.read_csv(output, keep_default_na=False)
    for labels, paths, first in zip(
        table["predicted_labels"], table["predicted_paths"], table["level_1"], strict=True
    ):
        chosen = labels.split("|") if labels else []
        assert consistent(chosen)  # a child never without its parent
        assert set(paths.split("|") if paths else []) <= set(chosen)
        assert first == (paths.split("/")[0] if paths else "")


def test_predict_path_columns_follow_the_served_paths(data_folder):
    from xtune.export.path_columns import path_columns

    task = task_for(data_folder, "ancestors", NODES)
    logits = np.random.default_rng(2).normal(0, 2, (64, len(NODES))).astype("float32")
    served = task.serving_outputs(tf.constant(logits))
    columns = path_columns(
        task.record()["hierarchy"], NODES, served["probabilities"].numpy(),
        served["predictions"].numpy(), [""] * len(logits),
    )  # fmt: skip
    paths = ["|".join(p.decode() for p in row if p) for row in served["paths"].numpy()]
    assert columns["predicted_paths"].tolist() == paths
    levels = served["level_labels"].numpy()
    for level in range(3):
        assert columns[f"level_{level + 1}"].tolist() == [n.decode() for n in levels[:, level]]


def task_for(data_folder: Path, mode: str, labels: list[str], **hierarchy):
    from xtune.tasks import build_tasks

    (task,) = build_tasks(parse_run_config(config(data_folder, mode, **hierarchy)).named_tasks())
    task.labels = labels
    return task


NODES = ["交通", "环境", "教育", "交通/道路", "交通/港口", "环境/噪音", "环境/空气"]
NODES += ["交通/道路/拥堵", "环境/空气/燃烧"]


@pytest.mark.parametrize(
    ("mode", "hierarchy"),
    [
        ("ancestors", {"decoding": "best_path"}),
        ("ancestors", {"decoding": "top_down"}),
        ("per_level", {"level_weights": [1.0, 1.0, 0.5]}),
        ("coherent", {"decoding": "best_path"}),
    ],
)
def test_single_path_modes_serve_one_full_path_of_the_tree(data_folder, mode, hierarchy):
    task = task_for(data_folder, mode, NODES, **hierarchy)
    logits = np.random.default_rng(0).normal(0, 2, (64, len(NODES))).astype("float32")
    served = task.serving_outputs(tf.constant(logits))
    for row, levels in zip(served["paths"].numpy(), served["level_labels"].numpy(), strict=True):
        chosen = [p.decode() for p in row if p]
        assert len(chosen) == 1 and chosen[0] in PATHS
        assert "/".join(n.decode() for n in levels if n) == chosen[0]
    targets = np.zeros_like(logits)
    targets[:, [0, 3, 7]] = 1  # 交通/道路/拥堵 with its ancestors
    metrics = task.evaluate(targets, logits)
    assert {"hierarchical_f1", "level_3_accuracy", "consistency"} <= set(metrics)


def test_leaves_mode_serves_its_labels_as_paths_with_level_probabilities(data_folder):
    task = task_for(data_folder, "leaves", PATHS)
    logits = np.random.default_rng(1).normal(0, 2, (32, len(PATHS))).astype("float32")
    served = task.serving_outputs(tf.constant(logits))
    probabilities = served["probabilities"].numpy()
    top = probabilities.argmax(axis=1)
    paths = [row[0].decode() for row in served["paths"].numpy()]
    assert paths == [PATHS[i] for i in top]
    # level 1 of 交通/...: the summed probability of the 交通 leaves (softmax)
    transport = [i for i, p in enumerate(PATHS) if p.startswith("交通")]
    for row, path in enumerate(paths):
        if path.startswith("交通"):
            expected = probabilities[row, transport].sum()
            assert served["level_probabilities"].numpy()[row, 0] == pytest.approx(
                expected, rel=1e-5
            )
    metrics = task.evaluate(np.eye(len(PATHS), dtype="float32")[top], logits)
    assert metrics["hierarchical_f1"] == 1.0 and metrics["consistency"] == 1.0


def test_a_label_that_contradicts_the_tree_names_file_and_row(data_folder, tmp_path):
    from xtune.training.trainer import train

    bad = tmp_path / "train.csv"
    table = pd.DataFrame(rows(20, 3))
    table.loc[4, "labels"] = "交通/噪音"
    table.to_csv(bad, index=False)
    raw = config(data_folder, "ancestors")
    raw["data"]["train"] = str(bad)
    with pytest.raises(DataError, match=rf"{bad}: row 5: label path '交通/噪音' contradicts"):
        train(parse_run_config(raw))


def test_hierarchy_settings_are_checked_with_the_config(data_folder):
    raw = config(data_folder, "ancestors")
    raw["loss"] = "softmax_ce"
    with pytest.raises(ConfigError, match="mode ancestors gives a row its node and every ancestor"):
        parse_run_config(raw)
    raw = config(data_folder, "coherent", level_weights=[1.0])
    with pytest.raises(ConfigError, match="only hierarchy.mode per_level weighs levels"):
        parse_run_config(raw)
    raw = config(data_folder, "none")
    raw["data"].pop("label_hierarchy")
    raw["training"]["metric"] = "hierarchical_f1"
    with pytest.raises(
        ConfigError, match="training.metric: 'hierarchical_f1' needs hierarchy.mode"
    ):
        parse_run_config(raw)
    raw = config(data_folder, "sideways")
    with pytest.raises(ConfigError, match="hierarchy.mode: 'sideways' is not one of"):
        parse_run_config(raw)


def test_a_grid_shares_prepared_data_only_between_rows_of_the_same_hierarchy_mode(data_folder):
    """A grid's rows on the same data but other hierarchy modes get their own targets (leaves
    vs every node): the cache once handed a mode's targets to the next row's mode."""
    from xtune.config import parse_run_config
    from xtune.grid.prepared_data_cache import PreparedDataCache

    cache = PreparedDataCache()
    prepared = {}
    for mode in ("leaves", "ancestors", "per_level"):
        run = parse_run_config(config(data_folder, mode), source="test")
        prepared[mode] = cache.get(run)[0].tasks["default"].labels
    assert set(prepared["leaves"]) < set(prepared["ancestors"])
    assert prepared["per_level"] == prepared["ancestors"] and cache.hits == 0
    focal = config(data_folder, "ancestors")
    focal["loss"] = "focal"  # another loss reads the same targets: shared
    cache.get(parse_run_config(focal, source="test"))
    assert cache.hits == 1


def test_tuned_thresholds_are_scored_with_the_hierarchical_metrics(data_folder):
    """`decoding: threshold` with `training.tune_thresholds`: metrics.json's `tuned` holds the
    per-level and hierarchical metrics of the tuned thresholds' decisions too.

    Ten rows of 交通/道路/拥堵 scored (交通 .9, 交通/道路 .4, 拥堵 .35) and ten of 环境/噪音
    (环境 .2, 环境/噪音 .6), every other node .1. At the default 0.5 the first kind predicts
    交通 alone, the second 环境/噪音 without its parent, dropped: hP = 10/10, hR = 10/50,
    hF = 1/3; half the rows consistent; level 1 right on half, level 2 on none. Per-label F1
    thresholds put each label between its negatives' .1 and its positives: every row exact."""
    from types import SimpleNamespace

    from xtune.training.trainer import Scored, score_task

    task = task_for(data_folder, "ancestors", NODES)  # bce: decoding auto = threshold
    task.bind_tree()
    probabilities = np.full((20, len(NODES)), 0.1, np.float32)
    targets = np.zeros((20, len(NODES)), np.float32)
    probabilities[:10, [0, 3, 7]] = [0.9, 0.4, 0.35]
    targets[:10, [0, 3, 7]] = 1
    probabilities[10:, [1, 5]] = [0.2, 0.6]
    targets[10:, [1, 5]] = 1
    logits = np.log(probabilities / (1 - probabilities))
    split = SimpleNamespace(targets=targets)
    splits = SimpleNamespace(splits={"train": split, "dev": split})
    run = SimpleNamespace(
        data=SimpleNamespace(tasks={task.name: splits}),
        graph=SimpleNamespace(task_models={task.name: None}),
    )
    training = SimpleNamespace(
        eval_batch_size=64, report_thresholds=[], decision_rule="auto",
        tune_thresholds="per_label_f1", seed=0,
    )  # fmt: skip
    scored = Scored()
    evaluation = SimpleNamespace(best_outputs={task.name: logits})
    score_task(task, run, None, evaluation, training, scored)
    default, tuned = scored.best[task.name], scored.tuned[task.name]
    assert default["hierarchical_precision"] == pytest.approx(1.0)
    assert default["hierarchical_recall"] == pytest.approx(0.2)
    assert default["hierarchical_f1"] == pytest.approx(1 / 3)
    assert default["consistency"] == pytest.approx(0.5)
    assert default["level_1_accuracy"] == pytest.approx(0.5)
    assert default["level_2_accuracy"] == pytest.approx(0.0)
    for key in ("hierarchical_f1", "consistency", "level_1_accuracy", "level_2_accuracy",
                "level_3_accuracy", "level_2_micro_f1", "subset_accuracy"):  # fmt: skip
        assert tuned[key] == pytest.approx(1.0), key
    assert tuned["level_2_macro_f1"] == pytest.approx(0.5)  # 2 of the 4 level-2 nodes occur
    assert set(tuned) == set(default)
