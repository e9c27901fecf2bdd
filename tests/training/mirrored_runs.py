"""Trains each case of `CASES` twice on two logical CPUs — `training.distribution: mirrored`
(two replicas) and one device — and prints, as one JSON line, how far the final weights of
the two runs are apart. Run by `test_distribution.py` in a subprocess: the CPU can only be
split before TensorFlow starts its devices.

Usage: python tests/training/mirrored_runs.py WORK_FOLDER
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import tensorflow as tf

CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from tests.grid.grid_helpers import tiny_base, write_split, write_tiny_data  # noqa: E402
from tests.tasks.task_data import (  # noqa: E402
    multitask_config,
    paraphrase_rows,
    sentiment_rows,
    write_task_files,
)
from xtune.config import parse_run_config  # noqa: E402
from xtune.training.trainer import train  # noqa: E402

TRAINING = {"epochs": 1, "save_weights": True, "tune_thresholds": None}
# Adam divides by sqrt(v) and global-norm clipping by the norm: both hide a gradient off by a
# constant factor (a loss scaled twice for the replicas). An epsilon of 1 makes the steps
# proportional to the gradient (lr * g / (|g| + 1)), so such an error shows in the weights.
SCALE_SENSITIVE = {"epsilon": 1.0, "learning_rate": 0.05}


def single_task(folder: Path, **sections: dict) -> dict:
    """`tiny_base` (32 rows, one epoch of 2 steps of 16 rows) without dropout."""
    raw = tiny_base(write_tiny_data(folder / "data"), folder / "runs", folder / "cache")
    raw["encoder"]["dropout"] = 0.0
    raw["head"]["dropout"] = 0.0
    raw["training"].update(TRAINING)
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def two_tasks(folder: Path) -> dict:
    """A classification and a pair-classification task, combined by PCGrad, 3 steps."""
    folder.mkdir(parents=True, exist_ok=True)
    tasks = {
        "sentiment": {
            "type": "classification",
            "data": write_task_files(folder, "sentiment", sentiment_rows, train=48, dev=16),
            "loss": "softmax_ce",
        },
        "paraphrase": {
            "type": "pair_classification",
            "data": write_task_files(folder, "paraphrase", paraphrase_rows, train=48, dev=16),
        },
    }
    for task in tasks.values():
        task["head"] = {"name": "default", "dropout": 0.0}
    raw = multitask_config(folder, tasks, epochs=1, pcgrad=True, jit_compile=False)
    raw["encoder"]["dropout"] = 0.0
    raw["optimizer"].update(SCALE_SENSITIVE)
    raw["training"].update(save_weights=True, tune_thresholds=None)
    return raw


def cases(folder: Path) -> dict[str, dict]:
    """(a) AdamW unclipped with TensorFlow's fused Adam kernel (`fused_update`; on each
    replica's copy of a variable), 27 rows in batches of 10 (the last one's 7 rows split 4 and
    3: the rows weight the replicas' losses); (b) layer-wise rates with FGM (one run: the suite's
    time) and the default global-norm clipping, which bites here (gradient norms ~2-5 > 1;
    clipping each replica's own gradient would differ); (c) two tasks by PCGrad."""
    unclipped = single_task(
        folder / "adamw", optimizer={**SCALE_SENSITIVE, "clipnorm": None, "fused_update": True}
    )
    write_split(folder / "adamw" / "data" / "train.csv", 27, seed=1)
    unclipped["training"]["batch_size"] = 10
    return {
        "adamw": unclipped,
        "layerwise_lr_fgm": single_task(
            folder / "layerwise_fgm",
            optimizer={**SCALE_SENSITIVE, "layerwise_lr_decay": 0.5},
            adversarial={"name": "fgm", "epsilon": 0.5},
        ),
        "pcgrad_two_tasks": two_tasks(folder / "pcgrad"),
    }


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    """Every array of the run's weights file, by its path in the file."""
    arrays = {}
    with h5py.File(run_dir / "model.weights.h5", "r") as weights:
        weights.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


def trained(raw: dict, distribution: str, name: str) -> tuple[dict[str, np.ndarray], dict]:
    """The run's final weights and what it records: strategy, replicas, training losses."""
    raw = copy.deepcopy(raw)
    raw["training"].update(distribution=distribution, run_name=name)
    result = train(parse_run_config(raw, source=name))
    record = {**result.extra["distribution"], "loss": [e["train_loss"] for e in result.history]}
    return final_weights(result.run_dir), record


def compare(one: dict[str, np.ndarray], two: dict[str, np.ndarray]) -> dict:
    """The largest absolute difference, and the largest relative to the weight's size."""
    assert one.keys() == two.keys(), "the runs saved different weights"
    absolute = max(float(np.max(np.abs(one[k] - two[k]), initial=0.0)) for k in one)
    relative = max(
        float(np.max(np.abs(one[k] - two[k]) / (np.abs(one[k]) + 1e-3), initial=0.0)) for k in one
    )
    return {"max_abs": absolute, "max_rel": relative, "arrays": len(one)}


def main(folder: Path) -> None:
    report = {}
    for name, raw in cases(folder).items():
        baseline = "auto" if name == "adamw" else "none"  # no GPU here: auto is one device
        single, single_record = trained(raw, baseline, f"{name}-one")
        mirrored, mirrored_record = trained(raw, "mirrored", f"{name}-mirrored")
        report[name] = {
            **compare(single, mirrored),
            "one": single_record,
            "mirrored": mirrored_record,
        }
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
