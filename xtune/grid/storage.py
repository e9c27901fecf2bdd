"""Disk problems (full, read-only, no permission) as one clear error, and atomic file writes."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from xtune.config import ConfigError

# Errors about the place being written to, not about the run or the data: retrying elsewhere
# or after freeing space is the fix, so they stop a grid instead of failing its runs one by one.
STORAGE_REASONS = {
    errno.ENOSPC: "no space left on device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
# Of those, the ones that a run's own writes can meet in a folder the grid created itself.
RUN_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class StorageError(ConfigError):
    """A file could not be written: the disk is full, or the place is read-only."""


def storage_error(error: OSError, path: Path, action: str) -> StorageError:
    """`PATH: cannot ACTION: REASON` for an `OSError` met while writing `path`."""
    reason = STORAGE_REASONS.get(error.errno or 0) or error.strerror or str(error)
    return StorageError(f"{path}: cannot {action}: {reason}")


def storage_cause(error: BaseException) -> OSError | None:
    """The disk-full / read-only `OSError` behind `error` (itself or a cause), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in RUN_STORAGE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)`, fsync, rename onto `path`: readers see the old file or the new one.

    On any `OSError` the temporary file is removed and a `StorageError` names `path`.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except OSError as error:
        remove_quietly(temporary)
        raise storage_error(error, path, "write") from None


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda temporary: temporary.write_bytes(text.encode("utf-8")))


def remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # nothing more can be done on a broken disk; the error that matters is raised
