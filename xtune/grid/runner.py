"""`run_grid`: show the plan, train each run not yet recorded, append one result line per run."""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
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
from pathlib import Path
from typing import Any

from xtune.config import RunConfig
from xtune.grid.prepared_data_cache import PreparedDataCache
from xtune.grid.results_file import ResultsContent, ResultsFile
from xtune.grid.spec import GridSpec, PlannedRun, format_value, load_grid

PACKAGES = ("xtune", "tensorflow", "keras", "keras-hub", "numpy")
TRACEBACK_CHARACTERS = 4000


def run_grid(
    grid_file: str | Path,
    only: list[str] | None = None,
    dry_run: bool = False,
    max_runs: int | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    output: str | Path | None = None,
) -> int:
    """Run the grid; 0 when every selected run is recorded as ok, 1 when any failed.

    `output` replaces the grid's results folder (default `reports/<grid name>`).
    """
    spec = load_grid(grid_file, overrides)
    if output is not None:
        spec = dataclasses.replace(spec, output=Path(output))
    runs = spec.select(only)
    check_data_files(runs)
    results = ResultsFile(spec.output)
    if dry_run:
        recorded = results.read()
        print_plan(spec, runs, recorded, max_runs)
        print_runs(runs, recorded)
        return 0
    with results.exclusive():
        removed = results.repair()
        if removed:
            print(
                f"{results.path}: removed an incomplete last line ({removed} bytes) left by "
                "an interrupted write; that run will be trained again",
                flush=True,
            )
        recorded = results.read()
        print_plan(spec, runs, recorded, max_runs)
        pending = [run for run in runs if run.run_id not in recorded.by_run_id]
        todo = pending if max_runs is None else pending[: max(max_runs, 0)]
        GridSession(spec, results).run(todo, len(runs), recorded=len(runs) - len(pending))
        recorded = results.read().by_run_id
    failed = [run for run in runs if recorded.get(run.run_id, {}).get("status") == "failed"]
    missing = [run for run in runs if run.run_id not in recorded]
    print(
        f"grid {spec.name}: {len(runs) - len(failed) - len(missing)} ok, {len(failed)} failed, "
        f"{len(missing)} not run; results {results.path}; report: xtune report {spec.output}/",
        flush=True,
    )
    return 1 if failed else 0


# ---------------------------------------------------------------- the plan


def check_data_files(runs: list[PlannedRun]) -> None:
    """Every data file every run reads must exist before the first run starts."""
    from xtune.data.examples import resolve_path
    from xtune.data.readers import DataError

    checked: set[Path] = set()
    for run in runs:
        data = run.config.data
        files = {"data.train": data.train, "data.dev": data.dev, "data.test": data.test}
        if isinstance(data.label_names, str):
            files["data.label_names"] = data.label_names
        for key, name in files.items():
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


def print_plan(
    spec: GridSpec, runs: list[PlannedRun], recorded: ResultsContent, max_runs: int | None
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
    todo = len(runs) - ok - failed
    if max_runs is not None:
        todo = min(todo, max(max_runs, 0))
    note = " (kept: delete a failed line from results.jsonl to retry it)" if failed else ""
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


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class GridSession:
    """Trains a list of planned runs in order, appending one result line after each."""

    def __init__(self, spec: GridSpec, results: ResultsFile):
        self.spec = spec
        self.results = results
        self.data_cache = PreparedDataCache()
        self.environment = environment_record()

    def run(self, todo: list[PlannedRun], grid_runs: int, recorded: int) -> None:
        """Train `todo`; `recorded` of the grid's `grid_runs` runs were finished before."""
        progress = GridProgress(self.spec.name, grid_runs, recorded, len(todo))
        for position, run in enumerate(todo, 1):
            print(
                f"\n[grid {self.spec.name}] run {position}/{len(todo)} of this session "
                f"({progress.done + 1}/{progress.total} of the grid): row {run.cell.name!r} "
                f"seed {run.seed} id {run.run_id}",
                flush=True,
            )
            line = self.execute(run)
            self.results.append(line)
            progress.finished(line["status"] == "ok")
            if line["status"] == "failed":
                print(f"[grid {self.spec.name}] run {run.run_id} FAILED: {line['error']}")
            print(progress.line(), flush=True)
        self.print_data_summary()

    def execute(self, run: PlannedRun) -> dict[str, Any]:
        """Train one run; any exception (or a non-finite loss) becomes a failed line."""
        from xtune.training.trainer import train

        started = time.perf_counter()
        run_dir = self.run_dir(run)
        line = self.line_head(run, run_dir)
        try:
            data, data_seconds = self.data_cache.get(run.config)
            line["data_seconds"] = round(data_seconds, 3)
            result = train(run.config, run_dir=run_dir, data=data)
            line.update(result_fields(result, run.config, data))
            check_finite_losses(result.history)
            line["status"] = "ok"
        except Exception as error:  # a failed run must not stop the grid
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

    def run_dir(self, run: PlannedRun) -> Path:
        """`training.output_dir/<grid>/<row>-seed<seed>-<run id>`, emptied if left finished."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", run.cell.name).strip("_")[:40] or "row"
        folder = (
            Path(run.config.training.output_dir)
            / self.spec.name
            / f"{run.cell.index:02d}-{slug}-seed{run.seed}-{run.run_id}"
        )
        if (folder / "metrics.json").exists():
            # Finished, but the process died before its line was appended: train it again.
            shutil.rmtree(folder)
        return folder

    def line_head(self, run: PlannedRun, run_dir: Path) -> dict[str, Any]:
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
            "metric": run.config.training.metric,
            "run_dir": str(run_dir),
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

    training = config.training
    steps_per_epoch = batches_per_epoch(
        data.tokenized["train"], training.batch_size, config.data.padding, config.data.max_length
    )
    if training.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, training.steps_per_epoch)
    history = result.history
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
    }


def check_finite_losses(history: list[dict[str, Any]]) -> None:
    for record in history:
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(
                f"epoch {record['epoch']}: training loss is {record['train_loss']}"
            )


def release_models() -> None:
    """Free the finished run's model and traced graphs before the next run builds its own."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def encoder_source(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "encoder.json").read_text(encoding="utf-8"))["source"]
    except (OSError, ValueError, KeyError):
        return None


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
