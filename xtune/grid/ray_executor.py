"""`RayExecutor`: a grid's pending runs as Ray tasks; the driver alone appends their lines.

Each run is one Ray task that trains it in a worker process with `GridSession.execute`, as
the local executor does, and returns its result line; the driver appends the lines as the
tasks finish. `results.jsonl` stays the one record: a killed driver loses only the runs in
flight. A worker process or machine lost mid-run is retried by Ray (`max_retries`); the retry
finds the run's unfinished folder through the runner's folder rules (resumed from its
checkpoint, else replaced), and a run lost more often than that is recorded as failed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xtune
from xtune.config import ConfigError
from xtune.grid.results_file import ResultsFile
from xtune.grid.runner import GridSession, GridStopped
from xtune.grid.spec import GridSpec, PlannedRun
from xtune.grid.storage import StorageError
from xtune.interrupts import raise_pending

INSTALL_HINT = "pip install xtune[ray]"
WAIT_SECONDS = 1.0  # the driver handles Ctrl-C and SIGTERM between waits
# The driver's settings a worker follows: xtune's own (fault injection in tests) and
# TensorFlow's log level (the command line quiets TensorFlow's start-up lines).
FORWARDED_VARIABLES = ("XTUNE_", "TF_CPP_MIN_LOG_LEVEL")
ERROR_CHARACTERS = 500
CONNECT_SECONDS = 10  # to reach --address before Ray is asked to join it


def import_ray() -> Any:
    """The `ray` module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"--executor ray needs the ray package, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """Trains the runs as Ray tasks, as many at a time as the cluster's resources allow.

    `address` is the cluster to join (`HEAD:6379`, see `ray start`; `auto`: the one started
    on this machine); None starts a Ray instance of this process's own on this machine
    (unless this process has initialized Ray already: then that one is used). A run requests
    `gpus_per_run` GPUs (a fraction lets runs share one) and `cpus_per_run` CPUs; a task
    whose process is lost is started again up to `max_retries` times.
    """

    address: str | None = None
    gpus_per_run: float = 0.0
    cpus_per_run: float = 1.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        check_resources(self.gpus_per_run, self.cpus_per_run, self.max_retries)
        import_ray()  # before the grid is planned: a missing package is the first error

    def train(self, session: GridSession, todo: list[PlannedRun]) -> None:
        if not todo:
            return
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            self.connect(ray)
        try:
            RaySubmission(ray, self, session).train(todo)
        finally:
            if started_here:
                ray.shutdown()

    def connect(self, ray: Any) -> None:
        """Join the cluster at `address`, or start a quiet local instance."""
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is None:
            options["include_dashboard"] = False
        else:
            check_reachable(self.address)
        try:
            # "local": a new instance, not the last cluster `ray start` left on this machine
            context = ray.init(address=self.address or "local", **options)
        except ConnectionError as error:
            raise ConfigError(
                f"--address {self.address}: {error}; a cluster with token authentication "
                "(`ray start` turns it on when ~/.ray/auth_token exists) also needs "
                "RAY_AUTH_MODE=token and its token here (~/.ray/auth_token or RAY_AUTH_TOKEN)"
            ) from None
        print(
            f"ray: {context.address_info.get('address') or self.address}; worker logs in "
            f"{context.address_info.get('session_dir', '?')}/logs on each node",
            flush=True,
        )

    def task_options(self) -> dict[str, Any]:
        variables = worker_environment()
        if not self.gpus_per_run:  # Ray (2.60) leaves every GPU visible to such a task
            variables["CUDA_VISIBLE_DEVICES"] = ""
        return {
            "num_cpus": self.cpus_per_run,
            "num_gpus": self.gpus_per_run,
            "max_retries": self.max_retries,
            "retry_exceptions": False,  # a run's own error is its failed line, not a retry
            "runtime_env": {"env_vars": variables},
        }


def check_resources(gpus_per_run: float, cpus_per_run: float, max_retries: int) -> None:
    if gpus_per_run < 0 or (gpus_per_run > 1 and not float(gpus_per_run).is_integer()):
        raise ConfigError(
            f"--gpus-per-run {gpus_per_run}: expected 0, a fraction below 1 (runs share a "
            "GPU) or a whole number of GPUs"
        )
    if cpus_per_run <= 0:
        raise ConfigError(f"--cpus-per-run {cpus_per_run}: expected a number above 0")
    if max_retries < 0:
        raise ConfigError(f"--max-retries {max_retries}: expected 0 or more")


def check_reachable(address: str) -> None:
    """An address where nothing listens is one error at once (Ray would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local": Ray resolves them itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise ConfigError(
            f"--address {address}: no Ray cluster answers there ({error.strerror or error}); "
            "start one with `ray start --head` on that machine, or leave --address out to "
            "start Ray on this one"
        ) from None


def worker_environment() -> dict[str, str]:
    """Environment variables of the workers: this process's xtune first on their path (a
    checkout or worktree, not another installed copy), and the forwarded settings."""
    source = Path(xtune.__file__).resolve().parents[1]
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if source.name not in ("site-packages", "dist-packages"):
        paths.insert(0, str(source))
    variables = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(path for path in paths if path))}
    variables.update(
        (name, value) for name, value in os.environ.items() if name.startswith(FORWARDED_VARIABLES)
    )
    # Runs sharing a GPU: each TensorFlow process takes the memory it needs, not all of it.
    variables.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return variables


class RaySubmission:
    """One session's tasks: submitted together, recorded by the driver as they finish."""

    def __init__(self, ray: Any, executor: RayExecutor, session: GridSession):
        self.ray = ray
        self.session = session
        self.task = ray.remote(train_run).options(**executor.task_options())
        self.in_flight: dict[Any, tuple[PlannedRun, float]] = {}

    def train(self, todo: list[PlannedRun]) -> None:
        spec = self.ray.put(self.session.spec)
        runs = self.ray.put(self.session.runs)
        driver = Driver(self.session.environment["command"], os.getcwd())
        try:
            for position, run in enumerate(todo, 1):
                self.session.announce(run, position)
                reference = self.task.remote(spec, runs, run, driver)
                self.in_flight[reference] = (run, time.perf_counter())
            while self.in_flight:
                raise_pending()
                done, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_SECONDS)
                for reference in done:
                    run, submitted = self.in_flight.pop(reference)
                    self.session.record(self.result_line(reference, run, submitted))
        finally:
            self.cancel_in_flight()

    def result_line(self, reference: Any, run: PlannedRun, submitted: float) -> dict[str, Any]:
        """The task's line; a lost task's failed line; a grid-stopping error raised again."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(reference)
        except exceptions.RayTaskError as error:
            if isinstance(error.cause, (GridStopped, StorageError)):
                raise error.cause from None  # as the local executor: the grid stops
            return self.session.lost_line(
                run, one_line(error.cause or error), str(error), time.perf_counter() - submitted
            )
        except exceptions.RayError as error:  # the worker or its machine was lost: no retries left
            return self.session.lost_line(
                run, one_line(error), str(error), time.perf_counter() - submitted
            )

    def cancel_in_flight(self) -> None:
        """Stop the tasks still running when the driver stops (an error, Ctrl-C): no line
        records them, and on a cluster nothing else would stop them."""
        if not self.in_flight:
            return
        for reference in self.in_flight:
            self.ray.cancel(reference, force=True)
        print(
            f"[grid {self.session.spec.name}] stopped {len(self.in_flight)} run(s) in flight; "
            "the next `xtune grid` of this grid trains them again",
            flush=True,
        )
        self.in_flight.clear()


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())[:ERROR_CHARACTERS]
    return f"{type(error).__name__}: {text}"


# ---------------------------------------------------------------- in a Ray worker


@dataclass(frozen=True)
class Driver:
    """What a worker follows of the driver: its command line (for the result lines) and its
    working folder (relative paths of the grid mean the same on every node)."""

    command: str
    directory: str


worker_sessions: list[GridSession] = []  # the last grid's: a worker's runs share its data


def train_run(spec: GridSpec, runs: list[PlannedRun], run: PlannedRun, driver: Driver) -> dict:
    """In a worker: train `run` as the local executor does; its line goes back to the driver."""
    os.chdir(driver.directory)
    return worker_session(spec, runs, driver).execute(run)


def worker_session(spec: GridSpec, runs: list[PlannedRun], driver: Driver) -> GridSession:
    """The session of this worker's previous task when it ran the same grid, else a new one."""
    if worker_sessions:
        session = worker_sessions[0]
        same_driver = session.environment["command"] == driver.command
        if same_driver and session.spec == spec and session.runs == runs:
            return session
    session = GridSession(spec, ResultsFile(spec.output), runs)
    session.environment["command"] = driver.command  # the driver's, not the worker's
    worker_sessions[:] = [session]
    return session
