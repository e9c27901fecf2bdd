"""`xtune train CONFIG --resume`: a run killed (SIGKILL, no clean-up) at a random training
step and resumed ends with the metrics of the same run uninterrupted, bitwise on this CPU;
Ctrl-C names the command that resumes; a folder that cannot be resumed is a one-line error.

The killed run is a separate `xtune train` process (`XTUNE_FAULT_INJECT=train_step:K`, see
`xtune.faults`); the uninterrupted and the resumed runs train in this process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.grid.grid_helpers import tiny_base, write_grid, write_tiny_data
from tests.reliability.helpers import assert_user_error, run_cli

pytestmark = pytest.mark.heavy

REPOSITORY = Path(__file__).resolve().parents[2]
EPOCHS, STEPS = 3, 2  # 32 train rows, batch 16
# Settings that only say how long things took or where they are.
UNCOMPARED = {"timings", "run_dir", "finished_at", "train_samples_per_second"}


def single_task(root: Path) -> dict:
    config = tiny_base(write_tiny_data(root / "data"), root / "runs")
    config["training"].update(epochs=EPOCHS, tune_thresholds="micro_f1", checkpoints=True)
    config["encoder"]["dropout"] = 0.3  # dropout's random state must resume too
    return config


def two_stages_two_tasks(root: Path) -> dict:
    """Multi-task with PCGrad (its own random state), a head-only first stage, EMA, warm-up."""
    config = single_task(root)
    data = config.pop("data")
    config["tasks"] = {
        "first": {"type": "classification", "data": data},
        "second": {"type": "classification", "data": {**data, "train": "dev.csv"}},
    }
    config["training"]["pcgrad"] = True
    config["finetune"] = {"frozen_epochs": 1}
    config["optimizer"]["use_ema"] = True
    config["schedule"] = {"name": "linear", "warmup_ratio": 0.2}
    config["training"]["report_to"] = ["tensorboard"]
    return config


CASES = {"single task": single_task, "two stages, two tasks": two_stages_two_tasks}
# Kill points (training steps, 1-based), drawn at random after the first checkpoint (for two
# stages: inside the second stage, whose optimizer the checkpoint holds). An interrupt before
# any checkpoint is the Ctrl-C test's first step.
_draw = random.Random(22)
KILLS = [
    ("single task", _draw.randint(STEPS + 1, EPOCHS * STEPS)),
    ("two stages, two tasks", _draw.randint(STEPS * 2 + 1, EPOCHS * STEPS)),
]


def comparable(value):
    """metrics.json without the timings and paths."""
    if isinstance(value, dict):
        return {
            k: comparable(v)
            for k, v in value.items()
            if k not in UNCOMPARED and not k.endswith("seconds")
        }
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def metrics(run: Path) -> dict:
    return comparable(json.loads((run / "metrics.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """`uninterrupted(case)`: the case's config and the metrics of its uninterrupted run."""
    done = {}

    def get(name: str) -> dict:
        if name not in done:
            done[name] = train_whole(tmp_path_factory.mktemp("resume"), name)
        return done[name]

    return get


def train_whole(root: Path, name: str) -> dict:
    from xtune.cli import main

    path = root / "run.yaml"
    config = CASES[name](root)
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert main(["train", str(path), "--run-dir", str(root / "whole")]) == 0
    assert not (root / "whole" / "checkpoint").exists()  # removed when the run ends
    return {"config": path, "root": root, "whole": metrics(root / "whole")}


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """`{tag: [(step, value), ...]}` from the TensorBoard event files in `folder`."""
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    for file in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, []).append((event.step, number))
    return {tag: sorted(points) for tag, points in scalars.items()}


def killed_run(config: Path, run: Path, step: int) -> None:
    """`xtune train` in its own process, SIGKILLed after training step `step`."""
    env = {**os.environ, "XTUNE_FAULT_INJECT": f"train_step:{step}", "PYTHONPATH": str(REPOSITORY)}
    command = [sys.executable, "-m", "xtune.cli", "train", str(config), "--run-dir", str(run)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize(("name", "step"), KILLS)
def test_a_run_killed_at_a_step_resumes_to_the_uninterrupted_result(
    uninterrupted, name, step, capsys
):
    case = uninterrupted(name)
    run = case["root"] / f"killed-{step}"
    killed_run(case["config"], run, step)
    done_epochs = (step - 1) // STEPS  # epochs whose checkpoint was written before the kill
    assert sorted(p.name for p in (run / "checkpoint").glob("*.npz")) == (
        [f"epoch-{done_epochs:03d}.npz"] if done_epochs else []
    )
    code, out, err = run_cli(["train", case["config"], "--resume", "--run-dir", run], capsys)
    assert code == 0, err
    expected = f"after epoch {done_epochs} of {EPOCHS}" if done_epochs else "from the start"
    assert f"resuming {run} {expected}" in out
    assert metrics(run) == case["whole"]
    assert not (run / "checkpoint").exists()
    if name == "two stages, two tasks":  # report_to: [tensorboard]
        check_tensorboard(run, case)


def check_tensorboard(run: Path, case: dict) -> None:
    """Steps count on through the stages and the resume; the dev metrics are the history's."""
    whole = tensorboard_scalars(case["root"] / "whole" / "tensorboard" / "train")
    resumed = tensorboard_scalars(run / "tensorboard" / "train")
    steps = list(range(1, EPOCHS * STEPS + 1))
    for tag in ("loss", "loss_first", "loss_second", "learning_rate"):
        assert [step for step, _ in whole[tag]] == steps, tag
    # The resumed folder holds the killed process's steps too: each step's last value counts.
    assert {tag: dict(points) for tag, points in resumed.items()} == {
        tag: dict(points) for tag, points in whole.items()
    }
    # Each stage's linear schedule (xtune.training.schedules): stage 1 has 2 steps and no
    # warm-up (round(0.2 x 2) = 0), stage 2 has 4 steps, 1 of warm-up; 0 at a stage's last step.
    rates = [value for _, value in whole["learning_rate"]]
    assert rates == pytest.approx([1e-3, 0.0, 1e-3, 1e-3, 5e-4, 0.0])
    dev = tensorboard_scalars(run / "tensorboard" / "validation")
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    for key in ("first.micro_f1", "second.macro_f1"):
        assert [value for _, value in dev[key]] == pytest.approx(
            [epoch[f"val_{key}"] for epoch in history], abs=1e-6
        )


def test_ctrl_c_names_the_resume_command_which_continues_the_latest_unfinished_run(
    uninterrupted, capsys, monkeypatch
):
    import xtune.training.callbacks

    case = uninterrupted("single task")
    monkeypatch.chdir(case["root"])

    def interrupted_before_first_checkpoint(self, epochs_done):
        signal.raise_signal(signal.SIGINT)

    def interrupted_after_first_epoch(self, epochs_done):
        original(self, epochs_done)
        signal.raise_signal(signal.SIGINT)

    original = xtune.training.callbacks.EpochCheckpoint.save
    with monkeypatch.context() as patch:
        patch.setattr(
            xtune.training.callbacks.EpochCheckpoint, "save", interrupted_before_first_checkpoint
        )
        code, _, err = run_cli(["train", case["config"]], capsys)  # the default run folder
    assert code == 130 and "is unfinished (no epoch finished); continue it with" in err, err
    run = Path(err.strip().split("--run-dir ")[1])
    with monkeypatch.context() as patch:
        patch.setattr(
            xtune.training.callbacks.EpochCheckpoint, "save", interrupted_after_first_epoch
        )
        code, out, err = run_cli(["train", case["config"], "--resume"], capsys)
    assert f"resuming {run} from the start (no epoch had finished)" in out
    assert code == 130 and len(err.strip().splitlines()) == 1, err
    assert f"checkpoint after epoch 1 of {EPOCHS}); continue it with: xtune train" in err
    assert err.strip().endswith(f"--resume --run-dir {run}")
    changed = ["--set", "optimizer.learning_rate=0.01"]
    code, _, err = run_cli(["train", case["config"], *changed, "--resume"], capsys)
    assert_user_error(code, err, "no unfinished run of this config in")
    code, _, err = run_cli(
        ["train", case["config"], *changed, "--resume", "--run-dir", run], capsys
    )
    assert_user_error(code, err, "was started with other settings (optimizer.learning_rate)")
    code, out, err = run_cli(["train", case["config"], "--resume"], capsys)  # finds the folder
    assert code == 0, err
    assert f"resuming {run} after epoch 1 of {EPOCHS}" in out
    assert metrics(run) == case["whole"]
    code, _, err = run_cli(["train", case["config"], "--resume", "--run-dir", run], capsys)
    assert_user_error(code, err, "the run is finished (metrics.json); nothing to resume")


def test_an_interrupted_grid_run_continues_from_its_checkpoint(
    uninterrupted, tmp_path, capsys, monkeypatch
):
    import xtune.training.callbacks

    case = uninterrupted("single task")
    base = yaml.safe_load(case["config"].read_text(encoding="utf-8"))
    base["training"]["output_dir"] = str(tmp_path / "runs")
    grid = write_grid(
        tmp_path / "grid.yaml",
        {"name": "g", "output": str(tmp_path / "results"), "base": base, "seeds": [0]},
    )

    def interrupted_after_second_epoch(self, epochs_done):
        original(self, epochs_done)
        if epochs_done == 2:
            signal.raise_signal(signal.SIGTERM)

    original = xtune.training.callbacks.EpochCheckpoint.save
    with monkeypatch.context() as patch:
        patch.setattr(
            xtune.training.callbacks.EpochCheckpoint, "save", interrupted_after_second_epoch
        )
        code, _, err = run_cli(["grid", grid], capsys)
    assert code == 143, err
    code, out, err = run_cli(["grid", grid], capsys)
    assert code == 0, err
    (run,) = (tmp_path / "runs" / "g").iterdir()
    assert f"resuming {run} after epoch 2 of {EPOCHS}" in out
    assert metrics(run) == case["whole"]
