"""`ResultsFile`: a grid's results.jsonl, one complete JSON line per finished or failed run.

Lines are appended whole and fsynced, so a killed process leaves at worst an incomplete last
line (no newline). `read` ignores such a line; `repair` cuts it off before new lines are
appended, so a line is never glued to a fragment and no run is recorded twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtune.config import ConfigError

RESULTS_FILE = "results.jsonl"


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
        with self.path.open("rb+") as file:
            data = file.read()
            keep = data.rfind(b"\n") + 1
            if keep == size:
                return 0
            file.truncate(keep)
            file.flush()
            os.fsync(file.fileno())
        return size - keep

    def append(self, line: dict[str, Any]) -> None:
        """Append one complete line and fsync it before returning."""
        text = json.dumps(line, ensure_ascii=False, default=str, allow_nan=True) + "\n"
        if "\n" in text[:-1]:
            raise AssertionError("a results line must not contain a newline")
        self.folder.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            payload = text.encode("utf-8")
            while payload:
                written = os.write(descriptor, payload)
                payload = payload[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if created:
            fsync_folder(self.folder)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Lock the results file: two grid processes must not write it at once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as lock:
            fsync_folder(self.folder)  # the file may be new
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"{self.folder}: another `xtune grid` process is writing these results"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
