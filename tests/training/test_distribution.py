"""`training.distribution`: config checks, `auto` without GPUs, and two mirrored replicas
training to the weights one device trains to (`mirrored_runs.py`, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import tensorflow as tf

from tests.tasks.task_data import multitask_config
from xtune.config import ConfigError, parse_run_config
from xtune.training.distribution import (
    check_global_batch,
    make_strategy,
    replica_slices,
    resolve_distribution,
)

pytestmark = pytest.mark.heavy  # one 35-s subprocess: scheduled early, not in the tail

REPOSITORY = Path(__file__).resolve().parents[2]
# Two replicas sum their slices' losses and gradients in another float32 order than one
# device: the weights differ by ~4e-9 at most after these runs' steps (measured). A real
# error moves them by ~1e-4: measured 6e-5 to 4e-4 with the rows' loss weights left out,
# each replica clipping its own gradient, the optimizer given the whole sum on every
# replica, FGM's direction or PCGrad taken per replica. 1e-6 lies between, 250x the noise.
TOLERANCE = 1e-6


def config(tmp_path: Path, **training) -> dict:
    data = tmp_path / "train.csv"
    data.write_text("text,labels\na,x\n", encoding="utf-8")
    return {
        "data": {"train": str(data), "dev": str(data)},
        "encoder": {
            "name": "random",
            "vocabulary": str(REPOSITORY / "tests/fixtures/vocab_zh_small.txt"),
        },
        "training": training,
    }


def test_bad_distribution_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        parse_run_config(config(tmp_path, distribution="mirror"), source="run.yaml")
    message = str(error.value)
    assert "training.distribution" in message
    assert "auto, mirrored, none" in message
    assert "\n" not in message


def test_mirrored_refuses_tasks_that_take_turns(tmp_path):
    tasks = {
        name: {"type": "classification", "data": {"train": "a.csv", "dev": "a.csv"}}
        for name in ("one", "two")
    }
    raw = multitask_config(tmp_path, tasks, distribution="mirrored")
    with pytest.raises(ConfigError, match="training.distribution: mirrored: several tasks"):
        parse_run_config(raw, source="run.yaml")


def test_default_is_auto_and_left_out_of_the_config_dict(tmp_path):
    parsed = parse_run_config(config(tmp_path), source="run.yaml")
    assert parsed.training.distribution == "auto"
    assert "distribution" not in parsed.to_dict()["training"]  # grid run ids stay as they were


def test_auto_without_gpus_is_one_device(monkeypatch):
    real = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config,
        "list_logical_devices",
        lambda kind=None: [] if kind == "GPU" else real(kind),
    )
    assert resolve_distribution("auto", None) == "none"
    assert make_strategy("none") is tf.distribute.get_strategy()


def test_batch_size_must_split_across_the_replicas():
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    check_global_batch(16, two_replicas)
    with pytest.raises(ConfigError, match="training.batch_size: 15 does not split across the 2"):
        check_global_batch(15, two_replicas)


def test_each_replica_gets_a_consecutive_slice_of_every_batch():
    rows = tf.reshape(tf.range(14), [7, 2])
    step = (tf.constant(3), ((rows, tf.range(7)), (tf.zeros([0, 2], tf.int32), tf.range(0))))
    slices = list(replica_slices(tf.data.Dataset.from_tensors(step), 2))
    assert [int(kind) for kind, _ in slices] == [3, 3]  # the step kind stays whole
    assert [batches[0][1].numpy().tolist() for _, batches in slices] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [len(batches[1][0]) for _, batches in slices] == [0, 0]  # an empty task stays empty


def test_mirrored_refuses_a_loss_of_row_pairs(tmp_path):
    data = {"train": "a.csv", "dev": "a.csv", "text_pair": "text_pair"}
    tasks = {"sts": {"type": "bi_encoder", "output": "cosine", "loss": "cosent", "data": data}}
    raw = multitask_config(tmp_path, tasks, distribution="mirrored")
    with pytest.raises(ConfigError, match="compares the rows of a batch"):
        parse_run_config(raw, source="run.yaml")


def test_two_replicas_train_the_weights_of_one(tmp_path):
    """(a) AdamW (TensorFlow's fused Adam kernel), (b) layer-wise rates with FGM and clipping,
    (c) two tasks by PCGrad: the same global batch on two mirrored CPU replicas and on one
    device."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "TF_CPP_MIN_LOG_LEVEL": "2"}
    script = REPOSITORY / "tests" / "training" / "mirrored_runs.py"
    finished = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPOSITORY,
        timeout=600,
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
    assert finished.returncode == 0 and lines, finished.stdout[-3000:] + finished.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("RESULT "))
    assert sorted(report) == ["adamw", "layerwise_lr_fgm", "pcgrad_two_tasks"]
    for name, case in report.items():
        assert case["mirrored"]["strategy"] == "mirrored", name
        assert case["mirrored"]["replicas"] == 2, name
        assert case["one"]["replicas"] == 1, name
        assert case["max_abs"] <= TOLERANCE, (name, case)
        assert case["one"]["loss"] == pytest.approx(case["mirrored"]["loss"], rel=1e-5), name
    assert report["adamw"]["one"]["strategy"] == "none"  # `auto` on a machine without GPUs
