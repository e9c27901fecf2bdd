"""`xtune grid --executor ray` on a local Ray instance: every run recorded once by the driver,
a worker killed mid-run retried (resumed from its checkpoint), the report equal to the local
executor's, a run lost more often than retried recorded as failed, a data error every run shares
stopping the grid (as with the local executor), bad options one error.

One Ray instance (2 CPUs) serves the module; both grids are trained once (module fixtures).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.grid.grid_helpers import REPOSITORY, markdown_table, read_lines, tiny_base, write_grid
from tests.reliability.helpers import assert_user_error, run_cli
from xtune.config import ConfigError
from xtune.grid.ray_executor import RayExecutor, check_reachable
from xtune.grid.report import write_report
from xtune.grid.runner import GridStopped, run_grid
from xtune.grid.spec import load_grid

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.heavy, pytest.mark.filterwarnings("ignore:Gradients do not exist")]

# Per-seed columns that say how long things took: the only ones that may differ.
TIMING_COLUMNS = {"wall s", "steps/s"}


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def grid(tiny_data, token_cache, tmp_path_factory) -> Path:
    """Two runs (seeds 0, 1) of 2 epochs of 2 steps, with a checkpoint after each epoch."""
    folder = tmp_path_factory.mktemp("ray_grid")
    base = tiny_base(tiny_data, folder / "runs", token_cache)
    base["training"].update(epochs=2, checkpoints=True)
    grid = {"name": "ray", "output": str(folder / "local"), "base": base, "seeds": [0, 1]}
    return write_grid(folder / "ray.yaml", grid)


@pytest.fixture(scope="module")
def local_lines(grid) -> list[dict]:
    assert run_grid(grid) == 0
    return read_lines(grid.parent / "local" / "results.jsonl")


@pytest.fixture(scope="module")
def ray_grid(grid, ray_instance) -> dict:
    """The grid on Ray; the first worker process to reach training step 3 (epoch 2) dies."""
    folder = grid.parent
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(output):
        patch.setenv("XTUNE_FAULT_INJECT", "train_step:3")
        patch.setenv("XTUNE_FAULT_ONCE", str(folder / "killed"))
        code = run_grid(grid, output=folder / "ray", executor=RayExecutor(max_retries=1))
    return {"code": code, "out": output.getvalue(), "results": folder / "ray" / "results.jsonl"}


def test_every_run_is_recorded_once_by_the_driver(grid, ray_grid, local_lines, capsys):
    assert ray_grid["code"] == 0, ray_grid["out"]
    lines = read_lines(ray_grid["results"])
    planned = sorted(run.run_id for run in load_grid(grid).runs)
    assert sorted(line["run_id"] for line in lines) == planned
    assert all(line["status"] == "ok" for line in lines)
    # The workers imported this checkout's xtune, as the driver does (not another copy).
    assert {line["git_commit"] for line in lines} == {local_lines[0]["git_commit"]}
    assert {line["command"] for line in lines} == {local_lines[0]["command"]}
    out = ray_grid["out"]
    assert "run 2/2 of this session (2/2 of the grid)" in out
    assert "[grid ray] [########################] 2/2 runs" in out

    before = ray_grid["results"].read_bytes()
    assert run_grid(grid, output=grid.parent / "ray", executor=RayExecutor()) == 0
    assert "to run now: 0" in capsys.readouterr().out
    assert ray_grid["results"].read_bytes() == before


def test_a_killed_worker_is_retried_from_its_checkpoint(grid, ray_grid):
    assert (grid.parent / "killed").exists(), "no worker was killed"
    lines = read_lines(ray_grid["results"])
    assert sorted(line["resumed"] for line in lines) == [False, True]
    for line in lines:
        run_dir = Path(line["run_dir"])
        assert (run_dir / "metrics.json").is_file()
        assert not (run_dir / "checkpoint").exists()  # removed when the run ended
        history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
        assert [epoch["epoch"] for epoch in history] == [1, 2]


def test_the_report_equals_the_local_executors(grid, ray_grid, local_lines):
    reports = {}
    for name in ("local", "ray"):
        text = Path(write_report(grid.parent / name)).read_text(encoding="utf-8")
        per_seed = markdown_table(text, "Per seed")
        reports[name] = (
            markdown_table(text, "Cells"),
            [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in per_seed],
        )
    assert reports["ray"] == reports["local"]
    by_run = {line["run_id"]: line for line in read_lines(ray_grid["results"])}
    for line in local_lines:  # every dev metric of every epoch, bit for bit
        assert by_run[line["run_id"]]["best"] == line["best"]
        assert by_run[line["run_id"]]["final"] == line["final"]


def test_a_run_lost_more_often_than_retried_is_recorded_as_failed(
    tiny_data, token_cache, tmp_path, ray_instance, monkeypatch, capsys
):
    base = tiny_base(tiny_data, tmp_path / "runs", token_cache)
    path = write_grid(tmp_path / "lost.yaml", {"name": "lost", "base": base, "seeds": [0]})
    monkeypatch.setenv("XTUNE_FAULT_INJECT", "run_start:1")  # every attempt dies
    code = run_grid(path, output=tmp_path / "results", executor=RayExecutor(max_retries=0))
    assert code == 1
    (line,) = read_lines(tmp_path / "results" / "results.jsonl")
    assert line["status"] == "failed" and "Worker" in line["error"], line["error"]
    assert "FAILED" in capsys.readouterr().out
    assert not (Path(line["run_dir"]) / "metrics.json").exists()  # the next session replaces it


def test_a_data_error_every_run_shares_stops_the_grid(tiny_data, tmp_path, ray_instance, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("id,text\n1,甲乙\n", encoding="utf-8")  # no labels
    shutil.copy(tiny_data / "dev.csv", data / "dev.csv")
    base = tiny_base(data, tmp_path / "runs")
    path = write_grid(tmp_path / "shared.yaml", {"name": "shared", "base": base, "seeds": [0]})
    with pytest.raises(GridStopped, match="every run of grid 'shared'"):
        run_grid(path, output=tmp_path / "results", executor=RayExecutor())
    assert (tmp_path / "results" / "results.jsonl").read_bytes() == b""
    assert not any((tmp_path / "runs").rglob("*.json"))


def test_workers_import_this_xtune_and_see_only_the_gpus_they_asked_for():
    variables = RayExecutor().task_options()["runtime_env"]["env_vars"]
    assert variables["PYTHONPATH"].split(os.pathsep)[0] == str(REPOSITORY)
    assert variables["CUDA_VISIBLE_DEVICES"] == ""  # a CPU-only run leaves the GPUs alone
    variables = RayExecutor(gpus_per_run=0.5).task_options()["runtime_env"]["env_vars"]
    assert "CUDA_VISIBLE_DEVICES" not in variables  # Ray sets it to the GPU it grants
    assert variables["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"  # runs sharing a GPU


def test_bad_executor_options_are_one_error(grid, capsys, monkeypatch):
    code, _, err = run_cli(["grid", grid, "--gpus-per-run", "0.5", "--address", "x:1"], capsys)
    assert_user_error(code, err, "--address, --gpus-per-run", "only with --executor ray")
    code, _, err = run_cli(["grid", grid, "--executor", "ray", "--gpus-per-run", "1.5"], capsys)
    assert_user_error(code, err, "--gpus-per-run 1.5", "fraction")
    code, _, err = run_cli(["grid", grid, "--executor", "ray", "--max-retries", "-1"], capsys)
    assert_user_error(code, err, "--max-retries -1")
    with pytest.raises(ConfigError, match="--address 127.0.0.1:1: no Ray cluster answers"):
        check_reachable("127.0.0.1:1")  # refused at once; Ray itself would retry for minutes
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code, _, err = run_cli(["grid", grid, "--executor", "ray", "--dry-run"], capsys)
    assert_user_error(code, err, "pip install xtune[ray]")
