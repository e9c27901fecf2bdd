"""Bad-input corpus helpers: run the CLI in-process, check one-line errors, snapshot folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

from xtune.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`xtune ARGV` in this process: (exit code, stdout, stderr). A traceback would raise here."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *needles: str) -> str:
    """Exit code 2 and exactly one `xtune CMD: error: ...` line naming every needle."""
    lines = [line for line in err.splitlines() if line.startswith("xtune ")]
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path (to prove nothing changed)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        # the grid's lock file (filelock) is no data: it exists once a grid has run there
        if path.is_file() and not path.name.endswith(".lock")
    }
