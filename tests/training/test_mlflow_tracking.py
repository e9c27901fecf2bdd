"""`training.report_to: [mlflow]`: runs and grid runs in a local MLflow store (an embedded
SQLite file under the test's folder; nothing leaves the machine)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from tests.grid.grid_helpers import tiny_base, write_grid, write_tiny_data
from tests.reliability.helpers import assert_user_error, run_cli

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.heavy


def store_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def tracked_config(root: Path, **tracking) -> dict:
    config = tiny_base(write_tiny_data(root / "data"), root / "runs")
    config["training"].update(epochs=2, report_to=["mlflow"], save_weights=False)
    config["tracking"] = {"mlflow_uri": store_uri(root), **tracking}
    return config


def write_config(root: Path, config: dict) -> Path:
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """One tracked two-epoch run: its folder, config and the store's client."""
    from xtune.cli import main

    root = tmp_path_factory.mktemp("mlflow_run")
    config = tracked_config(root, experiment="appeals")
    assert main(["train", str(write_config(root, config)), "--run-dir", str(root / "run")]) == 0
    client = mlflow.MlflowClient(tracking_uri=store_uri(root))
    return {"root": root, "run_dir": root / "run", "config": config, "client": client}


def only_run(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, runs
    return runs[0]


def test_a_run_logs_its_config_epochs_results_and_files(single_run):
    client, run_dir = single_run["client"], single_run["run_dir"]
    run = only_run(client, "appeals")
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    params = run.data.params
    assert params["optimizer.learning_rate"] == "0.001"
    assert params["training.epochs"] == "2" and params["encoder.name"] == "random"
    history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
    logged = client.get_metric_history(run.info.run_id, "val_micro_f1")
    assert [(m.step, round(m.value, 6)) for m in logged] == [
        (record["epoch"], round(record["val_micro_f1"], 6)) for record in history
    ]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert run.data.metrics["best/micro_f1"] == pytest.approx(metrics["best"]["micro_f1"])
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "history.csv", "labels.json"} <= artifacts
    assert not any(name.endswith((".h5", ".npz", ".npy")) for name in artifacts)
    assert run.data.tags["xtune.run_dir"] == str(run_dir)
    record = json.loads((run_dir / "mlflow.json").read_text(encoding="utf-8"))
    assert record["run_id"] == run.info.run_id


def test_a_resumed_run_continues_its_mlflow_run(single_run):
    from xtune.config import parse_run_config
    from xtune.training.mlflow_tracking import MlflowTracker

    config = parse_run_config(single_run["config"])
    before = only_run(single_run["client"], "appeals")
    tracker = MlflowTracker(config.tracking.mlflow_uri)
    tracker.start(config, single_run["run_dir"], {})
    assert tracker.run_id == before.info.run_id
    assert single_run["client"].get_run(tracker.run_id).info.status == "RUNNING"
    tracker.end("FINISHED")
    assert only_run(single_run["client"], "appeals").info.status == "FINISHED"


def test_grid_runs_are_tagged_with_grid_row_seed_and_run_id(tmp_path, capsys):
    base = tracked_config(tmp_path)
    base["training"]["epochs"] = 1
    grid = write_grid(
        tmp_path / "grid.yaml",
        {
            "name": "tracked",
            "output": str(tmp_path / "results"),
            "base": base,
            "variants": {"base": {}, "lr": {"optimizer.learning_rate": 3e-3}},
            "seeds": [0],
        },
    )
    code, _, err = run_cli(["grid", grid], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "results" / "results.jsonl").open()]
    client = mlflow.MlflowClient(tracking_uri=store_uri(tmp_path))
    experiment = client.get_experiment_by_name("tracked")  # the grid's name
    runs = client.search_runs([experiment.experiment_id])
    tags = sorted((r.data.tags["row"], r.data.tags["seed"], r.data.tags["run_id"]) for r in runs)
    assert tags == sorted((line["row"], str(line["seed"]), line["run_id"]) for line in lines)
    assert {r.data.tags["grid"] for r in runs} == {"tracked"}
    rates = {r.data.tags["row"]: r.data.params["optimizer.learning_rate"] for r in runs}
    assert rates == {"base": "0.001", "lr": "0.003"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tracking_server_that_is_down_warns_and_the_run_keeps_its_results(tmp_path, capsys):
    config = tracked_config(tmp_path)
    config["training"]["epochs"] = 1
    config["tracking"]["mlflow_uri"] = f"http://127.0.0.1:{closed_port()}"
    code, out, err = run_cli(
        ["train", write_config(tmp_path, config), "--run-dir", tmp_path / "run"], capsys
    )
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "MLflow tracking" in line]
    assert len(warnings) == 1 and "failed to start the run" in warnings[0], err
    assert "Traceback" not in err
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_mlflow_not_installed_is_one_config_error(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    config = tracked_config(tmp_path)
    code, _, err = run_cli(["train", write_config(tmp_path, config)], capsys)
    assert_user_error(code, err, "training.report_to: mlflow needs", "pip install 'xtune[mlflow]'")
