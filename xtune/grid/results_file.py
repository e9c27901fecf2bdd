"""`ResultsFile`: a grid's results.jsonl, one complete JSON line per finished or failed run.

Lines are appended whole and fsynced, so a killed process leaves at worst an incomplete last
line (no newline). `read` ignores such a line; `repair` cuts it off before new lines are
appended, so a line is never glued to a fragment and no run is recorded twice. A write that
fails (disk full) is undone before its `StorageError` is raised: the file keeps whole lines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from xtune.config import ConfigError
from xtune.faults import fault_point
from xtune.grid.storage import storage_error

RESULTS_FILE = "results.jsonl"
# Beside the results (a lock file of its own: filelock truncates the file it locks).
LOCK_FILE = "results.jsonl.lock"


@dataclass
class ResultsContent:
    """The complete lines of a results file, by run id (the last line wins on a repeat)."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    incomplete_tail: int = 0  # bytes after the last newline (a write cut short)

    @property
    def by_run_id(self) -> dict[str, dict[str, Any]]:
        return {line["run_id"]: line for line in self.lines}


class ResultsFile:
    """The append-only results of one grid folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_FILE

    def read(self) -> ResultsContent:
        """Every complete line; a corrupt line that is not the last one is an error."""
        if not self.path.is_file():
            return ResultsContent()
        data = self.path.read_bytes()
        complete_end = data.rfind(b"\n") + 1
        content = ResultsContent(incomplete_tail=len(data) - complete_end)
        for number, text in enumerate(data[:complete_end].decode("utf-8").splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as error:
                raise ConfigError(
                    f"{self.path}: line {number} is not valid JSON ({error}); it was not "
                    "written by xtune grid: fix or remove it"
                ) from None
            if not isinstance(line, dict) or "run_id" not in line:
                raise ConfigError(f"{self.path}: line {number}: expected an object with run_id")
            content.lines.append(line)
        return content

    def repair(self) -> int:
        """Cut off an incomplete last line left by a killed writer; returns the bytes removed."""
        if not self.path.is_file():
            return 0
        size = self.path.stat().st_size
        try:
            with self.path.open("rb+") as file:
                data = file.read()
                keep = data.rfind(b"\n") + 1
                if keep == size:
                    return 0
                file.truncate(keep)
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            raise storage_error(error, self.path, "cut off its incomplete last line") from None
        return size - keep

    def append(self, line: dict[str, Any]) -> None:
        """Append one complete line and fsync it before returning; undo it if that fails."""
        text = json.dumps(line, ensure_ascii=False, default=str, allow_nan=True) + "\n"
        if "\n" in text[:-1]:
            raise AssertionError("a results line must not contain a newline")
        payload = text.encode("utf-8")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise storage_error(error, self.path, "append a result line") from None
        try:
            start = os.fstat(descriptor).st_size
            try:
                # Two writes, so that the fault-injection tests can kill between them.
                write_all(descriptor, payload[: len(payload) // 2])
                fault_point("results_append")
                write_all(descriptor, payload[len(payload) // 2 :])
                os.fsync(descriptor)
            except OSError as error:
                truncate_quietly(descriptor, start)
                raise storage_error(error, self.path, "append a result line") from None
        finally:
            os.close(descriptor)
        if created:
            try:
                fsync_folder(self.folder)
            except OSError as error:
                raise storage_error(error, self.folder, "record the new results file") from None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Lock the results file: two grid processes must not write it at once (an OS lock on
        `results.jsonl.lock`, released when the process ends, however it ends)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path.open("a").close()  # created now if new; a read-only place fails here
        except OSError as error:
            raise storage_error(error, self.path, "open the results file for writing") from None
        try:
            fsync_folder(self.folder)  # the file may be new
        except OSError as error:
            raise storage_error(error, self.folder, "record the results file") from None
        lock = filelock.FileLock(self.folder / LOCK_FILE, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise ConfigError(
                f"{self.folder}: another `xtune grid` process is writing these results"
            ) from None
        except OSError as error:
            raise storage_error(error, self.folder / LOCK_FILE, "lock the results") from None
        try:
            yield
        finally:
            lock.release()


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_all(descriptor: int, payload: bytes) -> None:
    while payload:
        written = os.write(descriptor, payload)
        payload = payload[written:]


def truncate_quietly(descriptor: int, size: int) -> None:
    """Cut a failed append back off; should that fail too, `repair` cuts the fragment later."""
    try:
        os.ftruncate(descriptor, size)
        os.fsync(descriptor)
    except OSError:
        pass
