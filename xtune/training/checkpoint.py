"""Per-epoch checkpoints of a run in progress: `xtune train CONFIG --resume` continues an
interrupted run (Ctrl-C, SIGTERM, a lost machine) to the result of an uninterrupted one.

After every epoch the trainer writes `RUN/checkpoint/epoch-NNN.npz` — every model variable
(dropout seed states included), the optimizer's variables (step count, moments, EMA), the
best epoch's weights and dev outputs, PCGrad's random state — then `progress.json` naming it,
then removes the older file: a kill at any moment leaves one complete checkpoint. The run's
end removes the folder. Plain numpy and JSON, no TensorFlow: the CLI finds the folder to
resume before importing it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xtune.config_schema import RunConfig, without_non_result_keys
from xtune.registry import ConfigError
from xtune.run_folder import write_atomic, write_through_temporary

FOLDER = "checkpoint"
PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    """What `progress.json` records: the epochs done, the state file, the dev evaluation's
    history and best epoch, and the paths of the variables the state holds (for reading)."""

    epochs_done: int
    state_file: str
    evaluation: dict[str, Any]  # `DevEvaluation.state()`
    first_loss: float | None  # the divergence guard's reference loss
    model_paths: list[str] = field(default_factory=list)
    optimizer_paths: list[str] = field(default_factory=list)


@dataclass
class Checkpoint:
    """A loaded checkpoint: its progress record and its arrays (`model/i`, `optimizer/i`,
    `best/i`, `outputs/<task>`, `generator`)."""

    progress: Progress
    arrays: dict[str, np.ndarray]

    def listed(self, prefix: str) -> list[np.ndarray]:
        count = sum(1 for key in self.arrays if key.startswith(f"{prefix}/"))
        return [self.arrays[f"{prefix}/{i}"] for i in range(count)]


def folder_of(run_dir: str | Path) -> Path:
    return Path(run_dir) / FOLDER


def read_progress(run_dir: str | Path) -> Progress | None:
    """The run folder's checkpoint record; None when it has none (killed in its first epoch)."""
    path = folder_of(run_dir) / PROGRESS_FILE
    if not path.is_file():
        return None
    try:
        return Progress(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{path}: not a checkpoint record ({error})") from None


def load_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    progress = read_progress(run_dir)
    if progress is None:
        return None
    with np.load(folder_of(run_dir) / progress.state_file) as stored:
        return Checkpoint(progress, {key: stored[key] for key in stored.files})


def write_checkpoint(run_dir: str | Path, progress: Progress, arrays: dict[str, Any]) -> None:
    """The state file, then the record naming it, then the older state files removed."""
    folder = folder_of(run_dir)
    folder.mkdir(exist_ok=True)
    write_through_temporary(folder / progress.state_file, lambda path: np.savez(path, **arrays))
    write_atomic(folder / PROGRESS_FILE, json.dumps(asdict(progress), indent=1, default=float))
    for old in folder.glob("epoch-*.npz"):
        if old.name != progress.state_file:
            old.unlink(missing_ok=True)


def state_file_name(epochs_done: int) -> str:
    return f"epoch-{epochs_done:03d}.npz"


def variable_arrays(prefix: str, variables: Sequence[Any]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{i}": np.asarray(variable) for i, variable in enumerate(variables)}


def assign_variables(variables: Sequence[Any], values: list[np.ndarray], what: str) -> None:
    """Each variable set from the checkpoint, which must hold as many of the same shapes (paths
    are not compared: Keras numbers layer names per process)."""
    shapes = [tuple(variable.shape) for variable in variables]
    if shapes != [value.shape for value in values]:
        raise ConfigError(
            f"the checkpoint's {what} variables ({len(values)}) do not fit this model's "
            f"({len(shapes)}): the run folder was written by another config or xtune version"
        )
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def remove_checkpoint(run_dir: str | Path) -> None:
    shutil.rmtree(folder_of(run_dir), ignore_errors=True)


# ---------------------------------------------------------------- which folder to resume


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the settings that may change on resume (`NON_RESULT_KEYS`)."""
    return without_non_result_keys(json.loads(json.dumps(config, default=str)))


def differences(stored: Any, given: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    if not (isinstance(stored, dict) and isinstance(given, dict)):
        return [prefix or "(config)"] if stored != given else []
    found = []
    for key in sorted(set(stored) | set(given), key=str):
        found += differences(stored.get(key), given.get(key), f"{prefix}{key}.")
    return [key.rstrip(".") for key in found]


def check_resumable(run_dir: Path, config: RunConfig) -> None:
    """`run_dir` is an unfinished run of `config` (its result-relevant settings): else one
    `ConfigError` saying why."""
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml); nothing to resume")
    if (run_dir / "metrics.json").exists():
        raise ConfigError(f"{run_dir}: the run is finished (metrics.json); nothing to resume")
    stored = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    given = yaml.safe_load(config.to_yaml())
    changed = differences(comparable(stored), comparable(given))
    if changed:
        raise ConfigError(
            f"{run_dir}: was started with other settings ({', '.join(changed[:5])}); resume "
            "it with the config it was started with"
        )


def find_resumable(config: RunConfig, run_dir: str | Path | None) -> Path:
    """The run folder `--resume` continues: `run_dir` when given, else the latest unfinished
    run of the same config under `training.output_dir`."""
    if run_dir is not None:
        path = Path(run_dir)
        check_resumable(path, config)
        return path
    output = Path(config.training.output_dir)
    candidates = []
    for path in output.glob("*/config.yaml") if output.is_dir() else []:
        try:
            check_resumable(path.parent, config)
        except (ConfigError, OSError, yaml.YAMLError):
            continue
        candidates.append(path.parent)
    if not candidates:
        raise ConfigError(
            f"no unfinished run of this config in {output}/ to resume; train it without "
            "--resume, or name the folder with --run-dir"
        )
    return max(candidates, key=lambda path: path.stat().st_mtime)


def progress_text(run_dir: Path) -> str:
    """`checkpoint after epoch 2 of 5` or `no epoch finished`, for the interrupt message."""
    try:
        progress = read_progress(run_dir)
        stored = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        epochs = f" of {stored['training']['epochs']}"
    except (ConfigError, OSError, yaml.YAMLError, KeyError, TypeError):
        progress, epochs = read_progress_quietly(run_dir), ""
    if progress is None:
        return "no epoch finished"
    return f"checkpoint after epoch {progress.epochs_done}{epochs}"


def read_progress_quietly(run_dir: Path) -> Progress | None:
    try:
        return read_progress(run_dir)
    except ConfigError:
        return None
