"""A run folder: what a run writes (atomically) and how a trained model is loaded back from it.

Files: config.yaml (resolved), labels.json, encoder.json (encoder family, architecture and
tokenizer record), the tokenizer's own files (vocab.txt for BERT), tokenizer.json,
history.json + history.csv, thresholds.json, model.weights.h5 (and adapter.npz with LoRA),
and metrics.json, written last: a folder without metrics.json is an unfinished run (while it
trains it holds checkpoint/, `xtune.training.checkpoint`).
metrics.json records the sha256 of each weights file (`weights_sha256`); loading refuses a
weights file that no longer matches, and loads an older folder without the record with a
warning.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from xtune.data.readers import DataError
from xtune.files import file_sha256

log = logging.getLogger(__name__)

TEMPORARY_PREFIX = ".tmp-"  # + pid + "-" + the file's name
# What a killed writer leaves: `.tmp-<pid>-<name>` files, `.tokenizer-*` scratch folders.
STALE_WRITE = re.compile(r"\.tmp-(\d+)-|\.tokenizer-()")
STALE_SCRATCH_SECONDS = 3600

WEIGHTS_FILE = "model.weights.h5"
HASHES_KEY = "weights_sha256"  # in metrics.json: {file name: sha256 hex digest}
REQUIRED_FILES = (
    "config.yaml",
    "labels.json",
    "encoder.json",
    "tokenizer.json",
    WEIGHTS_FILE,
    "metrics.json",
)


class RunFolderError(DataError):
    """A run folder cannot be written (disk full, not writable) or holds damaged weights."""


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file, fsync, then rename: readers see the old file or the new one."""

    def write_text(temporary: Path) -> None:
        with temporary.open("w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())

    write_through_temporary(path, write_text)


def write_through_temporary(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)` in `path`'s folder, then rename it to `path`; on any error the
    temporary file is removed, `path` keeps its old content, and a full or unwritable disk is
    one `RunFolderError` naming the file."""
    # The temporary name ends like the file: Keras and numpy pick the format by suffix.
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    try:
        with write_errors_reported(path):
            write(temporary)
            os.replace(temporary, path)
    finally:
        close_hdf5_files(temporary)
        temporary.unlink(missing_ok=True)


def close_hdf5_files(path: Path) -> None:
    """Close HDF5 handles a failed writer left open on `path`: h5py would otherwise close them
    when they are garbage-collected, after the file is gone, and crash the process."""
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return
    target = os.path.abspath(path)
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            name = os.path.abspath(os.fsdecode(file_id.name))
        except Exception:  # an id closed meanwhile
            continue
        if name == target:
            with contextlib.suppress(Exception):
                h5py.File(file_id).close()


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Temporary files and tokenizer scratch folders of writers that were killed (`kill -9`)
    before they could remove them; a live process's are left alone. Returns their names."""
    removed = []
    for entry in folder.iterdir():
        match = STALE_WRITE.match(entry.name)
        if not match:
            continue
        pid = int(match.group(1)) if match.group(1) else None
        if pid is not None and (pid == os.getpid() or process_alive(pid)):
            continue
        if pid is None and time.time() - entry.stat().st_mtime < STALE_SCRATCH_SECONDS:
            continue  # a tokenizer scratch folder names no process: only old ones are stale
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def write_errors_reported(path: Path) -> Iterator[None]:
    """A full disk, a quota or a read-only / forbidden place is the user's to fix: one
    `RunFolderError` naming `path`. Other OS errors pass unchanged."""
    try:
        yield
    except OSError as error:
        number = error.errno
        # h5py reports HDF5's write failures as an OSError without errno; its text says why.
        if number is None and "No space left on device" in str(error):
            number = errno.ENOSPC
        if number not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise RunFolderError(
            f"{path}: cannot write: {os.strerror(number)}; nothing was replaced"
        ) from error


def save_model_weights(model: Any, path: Path) -> None:
    """The model's weights without the optimizer state, which `save_weights` of a compiled
    model would add (3x): saved through an uncompiled functional model over the same layers,
    whose weights file has the same layout."""
    import keras

    keras.Model(model.input, model.output).save_weights(path)


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.weights_sha256: dict[str, str] = {}  # recorded in metrics.json

    # The folder the latest `create` made, for the interrupted-run message of the CLI.
    latest: Path | None = None

    @classmethod
    def create(cls, path: str | Path) -> RunFolder:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunFolderError(
                f"{path}: is a file, not a folder; the run folder (--run-dir) must be a new "
                "folder or an unfinished run's"
            )
        if (path / "metrics.json").exists():
            raise FileExistsError(
                f"{path}: already holds a finished run; choose another training.run_name "
                "or remove the folder"
            )
        with write_errors_reported(path):
            path.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temporaries(path)
        if removed:
            log.info("%s: removed %s left by an interrupted run", path, ", ".join(removed))
        RunFolder.latest = path
        return cls(path)

    def write_setup(self, config: Any, vocab: Any, encoder: Any, text_encoder: Any) -> None:
        write_atomic(self.path / "config.yaml", config.to_yaml())
        write_atomic(
            self.path / "labels.json",
            json.dumps({"labels": vocab.names}, ensure_ascii=False, indent=1),
        )
        stored = self.write_tokenizer_files(encoder)
        write_atomic(self.path / "encoder.json", json.dumps(stored, indent=1, default=str))
        write_atomic(self.path / "tokenizer.json", json.dumps(text_encoder.settings(), indent=1))

    def write_tokenizer_files(self, encoder: Any) -> dict[str, Any]:
        """The tokenizer's files (`tokenizer.save`), each renamed into place; returns the
        encoder.json record (`xtune.encoders.write_encoder_files`)."""
        from xtune.encoders import write_encoder_files

        with write_errors_reported(self.path / "encoder.json"):
            scratch = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=self.path))
            try:
                stored = write_encoder_files(encoder, scratch)
                for file in sorted(scratch.iterdir()):
                    os.replace(file, self.path / file.name)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return stored

    def write_weights(self, model: Any, name: str = WEIGHTS_FILE) -> Path:
        """The model's weights (best epoch), written atomically; their sha256 is kept."""
        from xtune.faults import fault_point

        def write(temporary: Path) -> None:
            save_model_weights(model, temporary)
            fault_point("weights_write")  # fault-injection tests kill here, before the rename

        return self.write_binary(name, write)

    def write_binary(self, name: str, write: Callable[[Path], None]) -> Path:
        """A weights file written by `write(path)`, atomically, its sha256 recorded."""
        path = self.path / name
        write_through_temporary(path, write)
        self.weights_sha256[name] = file_sha256(path)
        return path

    def write_result(self, result: Any, thresholds: Any) -> None:
        """History, thresholds, then metrics.json (with the weights' sha256): the run is done."""
        history = result.history
        write_atomic(self.path / "history.json", json.dumps(history, indent=1))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]) if history else ["epoch"])
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.path / "history.csv", buffer.getvalue())
        if thresholds is not None:  # thresholds.json's content (the trainer's record)
            write_atomic(
                self.path / "thresholds.json",
                json.dumps(thresholds, indent=1, ensure_ascii=False),
            )
        summary = {**result.summary(), HASHES_KEY: dict(self.weights_sha256)}
        write_atomic(
            self.path / "metrics.json",
            json.dumps(summary, indent=1, ensure_ascii=False, default=str),
        )


class IncompleteRunError(FileNotFoundError):
    pass


def check_run_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise IncompleteRunError(f"{path}: run folder not found")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing == [WEIGHTS_FILE] and saved_no_weights(path):
        raise IncompleteRunError(
            f"{path}: a finished run trained with training.save_weights: false, so it has no "
            f"{WEIGHTS_FILE} to load; train it again with save_weights: true"
        )
    if missing:
        raise IncompleteRunError(
            f"{path}: not a finished xtune run folder; missing {', '.join(missing)}"
        )
    return path


def saved_no_weights(path: Path) -> bool:
    """Whether the folder's config.yaml says `training.save_weights: false`."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        return config["training"]["save_weights"] is False
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return False


def recorded_hashes(path: Path) -> dict[str, str] | None:
    """metrics.json's sha256 per weights file; None for a folder written before they were."""
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path / 'metrics.json'}: damaged, not JSON ({error})") from error
    if not isinstance(metrics, dict):
        raise RunFolderError(f"{path / 'metrics.json'}: damaged, not a JSON object")
    return metrics.get(HASHES_KEY)


def verify_weights(path: str | Path) -> None:
    """Refuse a finished run folder whose weights files are not what training wrote."""
    path = Path(path)
    hashes = recorded_hashes(path)
    if hashes is None:
        log.warning(
            "%s: metrics.json records no weights sha256 (a run folder from before xtune kept "
            "them); loading %s unchecked",
            path,
            WEIGHTS_FILE,
        )
        return
    for name, expected in hashes.items():
        if not (path / name).is_file():
            raise IncompleteRunError(f"{path / name}: missing; training wrote it")
        check_sha256(path / name, expected)


def check_sha256(file: Path, expected: str) -> None:
    actual = file_sha256(file)
    if actual != expected:
        raise RunFolderError(
            f"{file}: weights were modified after training (sha256 {actual[:16]}... != "
            f"recorded {expected[:16]}...); retrain, or restore the file"
        )


def load_weights(model: Any, file: Path) -> None:
    """`model.load_weights`, with a truncated or damaged file as one clear error."""
    try:
        model.load_weights(file)
    except (OSError, ValueError, KeyError) as error:
        # h5py raises OSError for a truncated file and KeyError / ValueError for missing or
        # misshapen datasets: either way the file is not the weights this run wrote.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RunFolderError(
            f"{file}: cannot load the weights ({type(error).__name__}: {first_line[:200]}); "
            "the file is truncated or damaged"
        ) from error
