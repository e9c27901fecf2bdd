"""`run_grid`: show the plan, train each run not yet recorded, append one result line per run."""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import itertools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from xtune.config import ConfigError, RunConfig
from xtune.faults import fault_point
from xtune.grid.prepared_data_cache import PreparedDataCache, data_settings
from xtune.grid.results_file import ResultsContent, ResultsFile
from xtune.grid.spec import GridSpec, PlannedRun, format_value, load_grid
from xtune.grid.storage import (
    StorageError,
    storage_cause,
    storage_error,
    write_text_atomically,
)
from xtune.interrupts import raise_pending
from xtune.run_folder import HASHES_KEY, WEIGHTS_FILE
from xtune.training.checkpoint import read_progress

PACKAGES = ("xtune", "tensorflow", "keras", "keras-hub", "numpy")
TRACEBACK_CHARACTERS = 4000
OWNER_FILE = "grid_run.json"  # in a run folder: which results folder's runner made it


def run_grid(
    grid_file: str | Path,
    only: list[str] | None = None,
    dry_run: bool = False,
    max_runs: int | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    output: str | Path | None = None,
    retry_failed: bool = False,
    executor: Executor | None = None,
) -> int:
    """Run the grid; 0 when every selected run is recorded as ok, 1 when any failed.

    `output` replaces the grid's results folder (default `reports/<grid name>`);
    `retry_failed` trains again the runs recorded as failed (their new line wins);
    `executor` trains the pending runs (default `LocalExecutor`: one by one in this process).
    """
    spec = load_grid(grid_file, overrides)
    if output is not None:
        spec = dataclasses.replace(spec, output=Path(output))
    runs = spec.select(only)
    check_data_files(runs)
    results = ResultsFile(spec.output)
    if dry_run:
        recorded = results.read()
        print_plan(spec, runs, recorded, max_runs, retry_failed)
        print_runs(runs, recorded)
        return 0
    try:
        recorded = train_pending(
            spec, runs, results, max_runs, retry_failed, executor or LocalExecutor()
        )
    except StorageError as error:
        raise StorageError(
            f"{error}; free space (or choose a writable place) and run the grid again: "
            "the runs recorded so far are kept"
        ) from None
    failed = [run for run in runs if recorded.get(run.run_id, {}).get("status") == "failed"]
    missing = [run for run in runs if run.run_id not in recorded]
    print(
        f"grid {spec.name}: {len(runs) - len(failed) - len(missing)} ok, {len(failed)} failed, "
        f"{len(missing)} not run; results {results.path}; report: xtune report {spec.output}/",
        flush=True,
    )
    return 1 if failed else 0


def train_pending(
    spec: GridSpec,
    runs: list[PlannedRun],
    results: ResultsFile,
    max_runs: int | None,
    retry_failed: bool,
    executor: Executor,
) -> dict[str, dict[str, Any]]:
    """Under the results lock: repair, plan, train what is pending; the lines by run id."""
    with results.exclusive():
        results.read()  # a corrupt line is an error before anything is changed
        removed = results.repair()
        if removed:
            print(
                f"{results.path}: removed an incomplete last line ({removed} bytes) left by "
                "an interrupted write; that run will be trained again",
                flush=True,
            )
        recorded = results.read()
        print_plan(spec, runs, recorded, max_runs, retry_failed)
        pending = pending_runs(runs, recorded, retry_failed)
        todo = pending if max_runs is None else pending[: max(max_runs, 0)]
        session = GridSession(spec, results, runs)
        session.run(todo, len(runs), recorded=len(runs) - len(pending), executor=executor)
        return results.read().by_run_id


# ---------------------------------------------------------------- the plan


def check_data_files(runs: list[PlannedRun]) -> None:
    """Every data file every run reads must exist before the first run starts."""
    from xtune.data.examples import resolve_path
    from xtune.data.readers import DataError

    checked: set[Path] = set()
    for run in runs:
        sections = {"data": run.config.data}
        if run.config.tasks:  # the tasks' files; the top-level data section only shares settings
            sections = {f"tasks.{name}.data": task.data for name, task in run.config.tasks.items()}
        for key, name, data in data_files(sections):
            if not name:
                continue
            path = resolve_path(data, name)
            if path in checked:
                continue
            if not path.is_file():
                raise DataError(
                    f"{path}: not found ({key} of row {run.cell.name!r}, data.root "
                    f"{data.root!r}); set data.root with --set data.root=FOLDER"
                )
            checked.add(path)


def data_files(sections: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(key, file name, data section) of every file a run's data sections name."""
    files = []
    for prefix, data in sections.items():
        names = {"train": data.train, "dev": data.dev, "test": data.test}
        if isinstance(data.label_names, str):
            names["label_names"] = data.label_names
        files += [(f"{prefix}.{key}", name, data) for key, name in names.items()]
    return files


def pending_runs(
    runs: list[PlannedRun], recorded: ResultsContent, retry_failed: bool
) -> list[PlannedRun]:
    """The runs with no line yet, and with `retry_failed` those whose last line failed."""
    lines = recorded.by_run_id
    retried = ("failed",) if retry_failed else ()
    return [
        run for run in runs if run.run_id not in lines or lines[run.run_id].get("status") in retried
    ]


def print_plan(
    spec: GridSpec,
    runs: list[PlannedRun],
    recorded: ResultsContent,
    max_runs: int | None,
    retry_failed: bool = False,
) -> None:
    cells = list({run.cell.index: run.cell for run in runs}.values())
    seeds = ", ".join(map(str, spec.seeds))
    print(f"grid {spec.name} ({spec.path})", flush=True)
    if spec.description:
        print(f"  {spec.description.strip()}")
    print(
        f"  {len(cells)} rows x {len(spec.seeds)} seeds ({seeds}) = {len(runs)} runs "
        f"-> {ResultsFile(spec.output).path}"
    )
    width = max(len(cell.name) for cell in cells)
    for cell in cells:
        changes = "; ".join(f"{k}={format_value(v)}" for k, v in cell.overrides.items())
        role = "(baseline) " if cell.index == 0 else ""
        print(f"  {cell.index:>3}  {cell.name:<{width}}  {role}{changes}".rstrip())
    if spec.shared_overrides:
        shared = "; ".join(f"{k}={format_value(v)}" for k, v in spec.shared_overrides.items())
        print(f"  every run: {shared}")
    lines = recorded.by_run_id
    ok = sum(1 for run in runs if lines.get(run.run_id, {}).get("status") == "ok")
    failed = sum(1 for run in runs if lines.get(run.run_id, {}).get("status") == "failed")
    todo = len(pending_runs(runs, recorded, retry_failed))
    if max_runs is not None:
        todo = min(todo, max(max_runs, 0))
    note = ""
    if failed:
        note = " (trained again)" if retry_failed else " (kept: --retry-failed trains them again)"
    print(f"  recorded: {ok} ok, {failed} failed{note}; to run now: {todo}", flush=True)


def print_runs(runs: list[PlannedRun], recorded: ResultsContent) -> None:
    lines = recorded.by_run_id
    for run in runs:
        status = lines.get(run.run_id, {}).get("status", "to run")
        print(f"  {run.run_id}  seed {run.seed:<4} {status:<7} {run.cell.name}")


# ---------------------------------------------------------------- running


class GridProgress:
    """A progress bar over the whole grid; the ETA is for this session's runs, from their mean."""

    def __init__(self, name: str, total: int, done: int, session_total: int, width: int = 24):
        self.name = name
        self.total = total
        self.done = done
        self.session_total = session_total
        self.started = time.perf_counter()
        self.session_runs = 0
        self.failed = 0
        self.width = width

    def finished(self, ok: bool) -> None:
        self.done += 1
        self.session_runs += 1
        self.failed += 0 if ok else 1

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        filled = round(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        remaining = self.session_total - self.session_runs
        eta = format_duration(elapsed / self.session_runs * remaining) if self.session_runs else "?"
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"[grid {self.name}] [{bar}] {self.done}/{self.total} runs{failed} | "
            f"elapsed {format_duration(elapsed)} | ETA {eta}"
        )


def run_tags(spec: GridSpec, run: PlannedRun) -> dict[str, str]:
    """How a grid's run is labelled in tracking tools (`training.report_to`)."""
    return {"grid": spec.name, "row": run.cell.name, "seed": str(run.seed), "run_id": run.run_id}


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class GridStopped(ConfigError):
    """The grid stops before its end: every run left would fail for the same reason."""


class Executor(Protocol):
    """Trains a session's runs: `session.execute` turns each into a line, `session.record`
    appends it; only the process that holds the results lock calls `record`."""

    def train(self, session: GridSession, todo: list[PlannedRun]) -> None: ...


class LocalExecutor:
    """Trains the runs one after another in this process."""

    def train(self, session: GridSession, todo: list[PlannedRun]) -> None:
        for position, run in enumerate(todo, 1):
            raise_pending()  # a signal a finalizer swallowed during the previous run
            session.announce(run, position)
            session.record(session.execute(run))


class GridSession:
    """Trains a list of planned runs (through an executor), appending one result line each."""

    def __init__(self, spec: GridSpec, results: ResultsFile, runs: list[PlannedRun]):
        self.spec = spec
        self.results = results
        self.runs = runs  # the grid's selected runs, to tell a data error they all share
        self.data_cache = PreparedDataCache()
        self.environment = environment_record()
        self.progress = GridProgress(spec.name, len(runs), 0, 0)
        self.todo = 0
        self.recorded_before = 0

    def run(
        self,
        todo: list[PlannedRun],
        grid_runs: int,
        recorded: int,
        executor: Executor | None = None,
    ) -> None:
        """Train `todo`; `recorded` of the grid's `grid_runs` runs were finished before."""
        self.progress = GridProgress(self.spec.name, grid_runs, recorded, len(todo))
        self.todo = len(todo)
        self.recorded_before = recorded
        (executor or LocalExecutor()).train(self, todo)
        self.print_data_summary()

    def announce(self, run: PlannedRun, position: int) -> None:
        """The line that says a run starts: the `position`-th of this session's runs."""
        print(
            f"\n[grid {self.spec.name}] run {position}/{self.todo} of this session "
            f"({self.recorded_before + position}/{self.progress.total} of the grid): "
            f"row {run.cell.name!r} seed {run.seed} id {run.run_id}",
            flush=True,
        )

    def record(self, line: dict[str, Any]) -> None:
        """Append a finished run's line and show the progress."""
        self.results.append(line)
        self.progress.finished(line["status"] == "ok")
        if line["status"] == "failed":
            print(f"[grid {self.spec.name}] run {line['run_id']} FAILED: {line['error']}")
        print(self.progress.line(), flush=True)

    def execute(self, run: PlannedRun) -> dict[str, Any]:
        """Train one run; an exception of its own (or a non-finite loss) becomes a failed line.

        A data error every run shares and a full or read-only disk stop the grid instead
        (`GridStopped`, `StorageError`): recording them once per run would help no one.
        """
        from xtune.training.trainer import train

        started = time.perf_counter()
        line = self.line_head(run)
        run_dir = None
        try:
            # A multi-task run reads its tasks' data itself (not through the data cache).
            data, data_seconds = (None, 0.0) if run.config.tasks else self.prepare_data(run)
            line["data_seconds"] = round(data_seconds, 3)
            run_dir = self.interrupted_run_dir(run)
            resume = run_dir is not None
            run_dir = run_dir or self.claim_run_dir(run)
            line["run_dir"] = str(run_dir)
            line["resumed"] = resume  # continued an interrupted folder (a killed grid or worker)
            fault_point("run_start")
            result = train(
                run.config, run_dir=run_dir, data=data, resume=resume, tags=run_tags(self.spec, run)
            )
            line.update(result_fields(result, run.config, data))
            line["weights_sha256"] = weights_sha256(run_dir)
            check_finite_losses(result.history)
            line["status"] = "ok"
        except (GridStopped, StorageError):
            self.discard_unfinished(run_dir)
            raise
        except Exception as error:  # a failed run must not stop the grid
            cause = storage_cause(error)
            if cause is not None:
                self.discard_unfinished(run_dir)
                where = Path(os.fsdecode(cause.filename)) if cause.filename else run_dir
                raise storage_error(cause, where or Path("."), f"write run {run.run_id}") from None
            traceback.print_exc()
            line["status"] = "failed"
            line["error"] = f"{type(error).__name__}: {error}"
            line["traceback"] = traceback.format_exc()[-TRACEBACK_CHARACTERS:]
        finally:
            release_models()
        line["wall_seconds"] = round(time.perf_counter() - started, 3)
        line["encoder"] = encoder_source(run_dir)
        line["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return line

    def lost_line(
        self, run: PlannedRun, error: str, details: str, seconds: float
    ) -> dict[str, Any]:
        """The failed line of a run whose process was lost (killed, its machine gone) more
        often than the executor retries: no result, the executor's error, its unfinished
        folder (which the next session resumes or replaces, as after a killed grid)."""
        line = self.line_head(run)
        run_dir = self.unfinished_run_dir(run)
        line.update(
            status="failed",
            error=error,
            traceback=details[-TRACEBACK_CHARACTERS:],
            run_dir=None if run_dir is None else str(run_dir),
            wall_seconds=round(seconds, 3),
            encoder=None,
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        return line

    def prepare_data(self, run: PlannedRun) -> tuple[Any, float]:
        """The run's tokenized data; a data error that every run of the grid shares stops it."""
        from xtune.data.readers import DataError

        self.data_cache.tokenizer_of(run.config)  # an encoder that fails is this run's failure
        try:
            return self.data_cache.get(run.config)
        except (DataError, ConfigError) as error:
            settings = data_settings(run.config)
            if any(data_settings(other.config) != settings for other in self.runs):
                raise  # other rows read other data: only the rows reading this data fail
            raise GridStopped(
                f"{error} (row {run.cell.name!r}, seed {run.seed}); every run of grid "
                f"{self.spec.name!r} reads this data, so the grid stops here and records "
                "nothing: fix the data and run it again"
            ) from None

    def interrupted_run_dir(self, run: PlannedRun) -> Path | None:
        """The unfinished folder this results folder made for `run`, when it holds a
        checkpoint (`training.checkpoints`): the run continues there instead of restarting.
        (`claim_run_dir` reuses such a folder's name, so there is at most one.)"""
        folder = self.unfinished_run_dir(run)
        return folder if folder is not None and read_progress(folder) is not None else None

    def unfinished_run_dir(self, run: PlannedRun) -> Path | None:
        """The unfinished folder this results folder made for `run`, with or without a
        checkpoint."""
        for folder in self.run_dir_names(run):
            if not folder.exists():
                return None
            if self.owns_unfinished(folder, run):
                return folder
        return None

    def run_dir_names(self, run: PlannedRun) -> Iterator[Path]:
        """`training.output_dir/<grid>/<row>-seed<seed>-<run id>`, then `-2`, `-3`, ..."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", run.cell.name).strip("_")[:40] or "row"
        parent = Path(run.config.training.output_dir) / self.spec.name
        name = f"{run.cell.index:02d}-{slug}-seed{run.seed}-{run.run_id}"
        for attempt in itertools.count(1):
            yield parent / (name if attempt == 1 else f"{name}-{attempt}")

    def claim_run_dir(self, run: PlannedRun) -> Path:
        """A new run folder `training.output_dir/<grid>/<row>-seed<seed>-<run id>[-N]`.

        A finished folder (metrics.json) is never removed or reused: it may be another results
        folder's run (the same grid with another --output) or a run killed before its line was
        written; the next free name `-2`, `-3`, ... is taken instead. An unfinished folder is
        replaced only when this results folder's runner created it for this run (its
        `grid_run.json` says so), which the results lock proves nothing else is writing now.
        """
        parent = Path(run.config.training.output_dir) / self.spec.name
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for folder in self.run_dir_names(run):
                if self.owns_unfinished(folder, run):
                    shutil.rmtree(folder)
                try:
                    folder.mkdir()  # atomic: of two processes only one gets a name
                except FileExistsError:
                    if (folder / "metrics.json").exists():
                        print(
                            f"[grid {self.spec.name}] {folder} holds a finished run that "
                            f"{self.results.path} does not list: kept; using another folder",
                            flush=True,
                        )
                    continue
                write_text_atomically(folder / OWNER_FILE, self.owner_record(run))
                return folder
        except OSError as error:
            raise storage_error(error, parent, f"create the run folder of {run.run_id}") from None
        raise AssertionError("unreachable")

    def owner_record(self, run: PlannedRun) -> str:
        record = {
            "results": str(self.results.path.resolve()),
            "grid": self.spec.name,
            "run_id": run.run_id,
            "row": run.cell.name,
            "seed": run.seed,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return json.dumps(record, indent=1, ensure_ascii=False) + "\n"

    def owns_unfinished(self, folder: Path, run: PlannedRun) -> bool:
        """Whether `folder` is an unfinished run folder this results folder made for `run`."""
        if not folder.is_dir() or (folder / "metrics.json").exists():
            return False
        try:
            owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # not made by a grid runner (or by an older xtune): leave it alone
        return (
            isinstance(owner, dict)
            and owner.get("results") == str(self.results.path.resolve())
            and owner.get("run_id") == run.run_id
        )

    def discard_unfinished(self, run_dir: Path | None) -> None:
        """Remove the unfinished folder this session made, when the grid stops mid-run."""
        if run_dir is None or (run_dir / "metrics.json").exists():
            return
        shutil.rmtree(run_dir, ignore_errors=True)

    def line_head(self, run: PlannedRun) -> dict[str, Any]:
        return {
            "grid": self.spec.name,
            "grid_file": str(self.spec.path),
            "grid_description": self.spec.description,
            "run_id": run.run_id,
            "status": "running",
            "row": run.cell.name,
            "row_index": run.cell.index,
            "overrides": run.cell.overrides,
            "shared_overrides": self.spec.shared_overrides,
            "seed": run.seed,
            "metric": "mean_score" if run.config.tasks else run.config.training.metric,
            "run_dir": None,
            "config": run.config.to_dict(),
            **self.environment,
        }

    def print_data_summary(self) -> None:
        cache = self.data_cache
        if not cache.prepare_seconds:
            return
        seconds = sum(cache.prepare_seconds.values())
        print(
            f"[grid {self.spec.name}] data: {len(cache.prepare_seconds)} dataset(s) read and "
            f"tokenized in {seconds:.1f} s, then reused by {cache.hits} run(s)",
            flush=True,
        )


def result_fields(result: Any, config: RunConfig, data: Any) -> dict[str, Any]:
    """What a result line keeps of a `RunResult`."""
    from xtune.data.pipeline import batches_per_epoch
    from xtune.training.trainer import train_bucket_limit

    training = config.training
    history = result.history
    if config.tasks:  # steps per task are in the history; a PCGrad step trains every task
        steps = sum(
            max(record[f"steps_{name}"] for name in config.tasks) if training.pcgrad
            else sum(record[f"steps_{name}"] for name in config.tasks)
            for record in history
        )  # fmt: skip
    else:
        steps_per_epoch = batches_per_epoch(
            next(iter(data.tasks.values())).splits["train"].sides[0], training.batch_size,
            config.data.padding,
            config.data.max_length,
            train_bucket_limit(training),
        )  # fmt: skip
        if training.steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, training.steps_per_epoch)
        steps = steps_per_epoch * len(history)
    train_seconds = sum(record["train_seconds"] for record in history)
    final = {k.removeprefix("val_"): v for k, v in history[-1].items() if k.startswith("val_")}
    return {
        "history": history,
        "epochs": len(history),
        "best_epoch": result.best_epoch,
        "final_epoch": history[-1]["epoch"],
        "best": result.best,
        "final": final,
        "tuned": result.tuned,
        "decision_rule": result.extra.get("decision_rule"),
        "test": result.test,
        "fixed_thresholds": result.extra.get("fixed_thresholds"),
        "baseline": result.baseline,
        "parameters": result.parameters,
        "run_seconds": result.seconds,
        "train_seconds": round(train_seconds, 3),
        "steps": steps,
        "steps_per_second": round(steps / train_seconds, 3) if train_seconds else None,
        "train_samples_per_second": result.train_samples_per_second,
        "device": result.device,
        "precision": result.extra.get("precision"),
        "timings": result.extra.get("timings"),
        "data_warnings": result.extra.get("data_warnings"),
        **multitask_fields(result),
    }


def multitask_fields(result: Any) -> dict[str, Any]:
    """A multi-task run's tasks and the `best` keys of their selection metrics."""
    tasks = result.extra.get("tasks")
    if not tasks:
        return {}
    keys = [f"{name}.{task['metric']}" for name, task in tasks.items()]
    return {"tasks": tasks, "task_metrics": keys}


def check_finite_losses(history: list[dict[str, Any]]) -> None:
    for record in history:
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(
                f"epoch {record['epoch']}: training loss is {record['train_loss']}"
            )


def release_models() -> None:
    """Free the finished run's model and traced graphs before the next run builds its own."""
    import keras

    from xtune.data.tokenization import forget_traced_encoders

    keras.backend.clear_session()
    forget_traced_encoders()  # their graphs hold resources clear_session freed
    gc.collect()


def weights_sha256(run_dir: Path) -> str | None:
    """The weights file's sha256 as the run folder recorded it in metrics.json (None when
    weights were not saved); read, not recomputed: hashing a large model twice is wasted."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (metrics.get(HASHES_KEY) or {}).get(WEIGHTS_FILE)


def encoder_source(run_dir: Path | None) -> str | None:
    """The encoder's description from encoder.json (older folders kept it at the top level)."""
    if run_dir is None:
        return None
    try:
        stored = json.loads((run_dir / "encoder.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict):
        return None
    record = stored.get("encoder") if isinstance(stored.get("encoder"), dict) else {}
    source = stored.get("source") or record.get("source")
    return str(source) if source else None


# ---------------------------------------------------------------- provenance


def environment_record() -> dict[str, Any]:
    """Library versions, git commit and machine, shared by every line of a session."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    commit, dirty = git_state(Path(__file__).resolve().parents[2])
    return {
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
        "host": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "gpus": gpu_names(),
        },
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """HEAD commit and whether tracked files differ from it (read-only git calls)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def gpu_names() -> list[str]:
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names
