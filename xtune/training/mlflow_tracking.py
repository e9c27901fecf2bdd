"""`training.report_to: [mlflow]`: each run is an MLflow run, grid runs included.

Where: `tracking.mlflow_uri` (default `sqlite:///mlruns/mlflow.db`, an embedded store in
./mlruns/ with the artifacts beside it in mlruns/artifacts/; MLflow 3 refuses its old
plain-file store) or any MLflow server URI. The experiment is `tracking.experiment`, else the
grid's name, else `xtune`. Each run gets:
- params: the resolved config, flattened (`optimizer.learning_rate`, `data.max_length`, ...);
- metrics: every epoch's training loss and dev metrics (step = epoch), then the kept epoch's
  dev metrics as `best/...`, tuned-threshold ones as `tuned/...`, test as `test/...`, and the
  training throughput;
- artifacts: the run folder's small files (config, metrics, history, labels, reports);
- tags: `grid`, `row`, `seed`, `run_id` for grid runs, and the run folder.

A tracking failure (a server down, a full disk under the store) prints one warning and
turns tracking off for the run; the run's own folder and results are never touched by it.
A resumed run (`--resume`) continues the MLflow run it started (its id is in RUN/mlflow.json).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras

from xtune.config_schema import RunConfig
from xtune.run_folder import write_atomic

RECORD_FILE = "mlflow.json"  # in the run folder: the MLflow run id, for a resumed run
ARTIFACT_SUFFIXES = (".json", ".yaml", ".md", ".csv", ".txt")
ARTIFACT_MAX_BYTES = 1 << 20
PARAM_MAX_CHARS = 6000  # MLflow's limit on a parameter value
BATCH = 100  # parameters or metrics per request (MLflow accepts up to 100 params a batch)
# A server that does not answer costs a few seconds, not MLflow's default minutes of retries.
CLIENT_ENVIRONMENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


class MlflowTracker:
    """One xtune run as one MLflow run. Every call to MLflow is `guarded`: the first failure
    warns and turns this tracker off."""

    def __init__(self, uri: str):
        self.uri, self.client, self.run_id = uri, None, None
        self.enabled = True

    @contextmanager
    def guarded(self, doing: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        try:
            yield
        except Exception as error:  # tracking must never cost the run its results
            self.enabled = False
            print(
                f"xtune: warning: MLflow tracking ({self.uri}) failed to {doing} and is off "
                f"for this run; the run's own results are unaffected: "
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                file=sys.stderr,
                flush=True,
            )

    def start(self, config: RunConfig, run_dir: Path, tags: dict[str, str]) -> None:
        with self.guarded("start the run"):
            self.client = mlflow_client(self.uri)
            previous = read_record(run_dir, self.uri)
            if previous is not None:
                self.run_id = previous
                self.client.update_run(previous, status="RUNNING")
                return
            name = experiment_name(config, tags)
            all_tags = {**tags, "xtune.run_dir": str(run_dir)}
            run = self.client.create_run(
                experiment_id(self.client, self.uri, name), run_name=run_dir.name, tags=all_tags
            )
            self.run_id = run.info.run_id
            print(
                f"xtune: MLflow run {self.run_id} in experiment {name!r} at {self.uri} "
                f"(view it with the full mlflow package: mlflow ui --backend-store-uri {self.uri})",
                flush=True,
            )
            record = {"tracking_uri": self.uri, "run_id": self.run_id}
            write_atomic(run_dir / RECORD_FILE, json.dumps(record))
            self.log_params(flatten(config.to_dict()))

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, str(value)[:PARAM_MAX_CHARS]) for key, value in params.items()]
        for first in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[first : first + BATCH])

    def log_metrics(self, values: dict[str, Any], step: int, doing: str) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        with self.guarded(doing):
            stamp = now_ms()
            items = [
                Metric(metric_key(key), float(value), stamp, step)
                for key, value in flatten(values).items()
                if finite(value)
            ]
            for first in range(0, len(items), BATCH):
                self.client.log_batch(self.run_id, metrics=items[first : first + BATCH])

    def finish(self, run_dir: Path, summary: dict[str, Any]) -> None:
        """The kept epoch's results, the folder's small files, and the run marked finished."""
        if self.run_id is None:
            return
        final = {key: summary.get(key) for key in ("best", "tuned", "test")}
        final["train_samples_per_second"] = summary.get("train_samples_per_second")
        final["seconds"] = summary.get("seconds")
        self.log_metrics(final, summary.get("best_epoch") or 0, "log the results")
        with self.guarded("store the run folder's files"):
            for path in small_files(run_dir):
                self.client.log_artifact(self.run_id, str(path))
        self.end("FINISHED")

    def end(self, status: str) -> None:
        if self.run_id is not None:
            with self.guarded("end the run"):
                self.client.set_terminated(self.run_id, status=status)


class MlflowEpochLog(keras.callbacks.Callback):
    """Each epoch's dev record (`DevEvaluation.history`) as MLflow metrics, step = epoch."""

    def __init__(self, tracker: MlflowTracker, evaluation: Any):
        super().__init__()
        self.tracker, self.evaluation = tracker, evaluation

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.evaluation.history:
            return
        record = dict(self.evaluation.history[-1])
        step = int(record.pop("epoch", epoch + 1))
        self.tracker.log_metrics(record, step, f"log epoch {step}")


def start_mlflow(config: RunConfig, run_dir: Path, tags: dict[str, str]) -> MlflowTracker:
    """The run's tracker: started when `training.report_to` names mlflow; otherwise one
    whose every call does nothing."""
    tracker = MlflowTracker(config.tracking.mlflow_uri)
    if "mlflow" in config.training.report_to:
        tracker.start(config, Path(run_dir), tags)
    return tracker


def ending_status(error: BaseException) -> str:
    """MLflow's status for a run that stopped with `error`: KILLED for an interrupt."""
    return "FAILED" if isinstance(error, Exception) else "KILLED"


def mlflow_client(uri: str) -> Any:
    for key, value in CLIENT_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    for name in ("mlflow", "alembic"):  # their INFO lines about creating tables
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    database = local_database(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def local_database(uri: str) -> Path | None:
    """The file of a `sqlite:///path` URI (relative to the working folder), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def experiment_name(config: RunConfig, tags: dict[str, str]) -> str:
    return config.tracking.experiment or tags.get("grid") or "xtune"


def experiment_id(client: Any, uri: str, name: str) -> str:
    """The experiment's id, created if new; a local store keeps its artifacts beside it."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    database = local_database(uri)
    location = None
    if database is not None:
        location = (database.parent / "artifacts" / name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def read_record(run_dir: Path, uri: str) -> str | None:
    """The MLflow run this folder started (a resumed run), if it went to the same store."""
    try:
        record = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("run_id") if record.get("tracking_uri") == uri else None


def small_files(run_dir: Path) -> list[Path]:
    return sorted(
        path
        for path in Path(run_dir).iterdir()
        if path.is_file()
        and path.suffix in ARTIFACT_SUFFIXES
        and not path.name.startswith(".")
        and path.stat().st_size <= ARTIFACT_MAX_BYTES
    )


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of `a.b.c` keys (`/` for result groups: `best/micro_f1`)."""
    if not isinstance(values, dict):
        return {prefix: values} if prefix else {}
    out: dict[str, Any] = {}
    separator = "/" if prefix in ("best", "tuned", "test") else "."
    for key, value in values.items():
        out.update(flatten(value, f"{prefix}{separator}{key}" if prefix else str(key)))
    return out


def metric_key(key: str) -> str:
    """MLflow metric names allow letters, digits and `_-./ `; anything else becomes `_`."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def finite(value: Any) -> bool:
    """Whether `value` is a finite number (a float, numpy scalar or tensor of one; not a
    bool or a string)."""
    if isinstance(value, (bool, str)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def now_ms() -> int:
    return int(time.time() * 1000)
