"""A full disk or a read-only results folder: one clear error, exit 2, nothing damaged."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.grid.grid_helpers import read_lines, tiny_base, write_grid
from tests.reliability.helpers import assert_user_error, run_cli, snapshot
from xtune.grid.results_file import ResultsFile
from xtune.grid.runner import GridSession
from xtune.grid.storage import StorageError

pytestmark = pytest.mark.filterwarnings("ignore:Gradients do not exist")

DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def temporary_files(*folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob("*") if ".tmp" in p.name]


def fail_writes_to(monkeypatch, name: str, after_bytes: int = 10) -> None:
    """`os.write` to a file called `name` writes `after_bytes`, then the disk is full."""
    real_write = os.write

    def write(descriptor: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{descriptor}").endswith(name):
            if after_bytes:
                real_write(descriptor, bytes(data[:after_bytes]))
            raise DISK_FULL
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", write)


# ---------------------------------------------------------------- results.jsonl


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_failed_append_leaves_the_results_file_as_it_was(tmp_path, monkeypatch, where):
    results = ResultsFile(tmp_path)
    results.append({"run_id": "a", "status": "ok"})
    before = results.path.read_bytes()
    if where == "write":
        fail_writes_to(monkeypatch, "results.jsonl")
    else:
        monkeypatch.setattr(os, "fsync", lambda descriptor: (_ for _ in ()).throw(DISK_FULL))
    with pytest.raises(StorageError, match=r"results.jsonl: cannot append .*disk full"):
        results.append({"run_id": "b", "status": "ok", "padding": "x" * 1000})
    monkeypatch.undo()
    assert results.path.read_bytes() == before
    assert temporary_files(tmp_path) == []


@pytest.fixture(scope="module")
def finished(tiny_data, token_cache, tmp_path_factory) -> Path:
    """A grid of two runs (seeds 0, 1) of which seed 0 is trained and recorded."""
    from xtune.grid.runner import run_grid

    folder = tmp_path_factory.mktemp("storage")
    base = tiny_base(tiny_data, folder / "runs", token_cache)
    base["training"]["save_weights"] = True
    grid = {"name": "storage", "output": str(folder / "results"), "base": base, "seeds": [0, 1]}
    path = write_grid(folder / "storage.yaml", grid)
    assert run_grid(path, max_runs=1) == 0
    return path


def test_a_full_disk_at_the_append_stops_the_grid_with_one_line(finished, monkeypatch, capsys):
    folder = finished.parent
    results = folder / "results" / "results.jsonl"
    before = results.read_bytes()
    (recorded,) = read_lines(results)

    def execute(session, run):  # the append is under test, not the training
        return {**recorded, "run_id": run.run_id, "seed": run.seed}

    monkeypatch.setattr(GridSession, "execute", execute)
    fail_writes_to(monkeypatch, "results.jsonl")
    code, _, err = run_cli(["grid", finished], capsys)
    assert_user_error(code, err, "results.jsonl", "disk full", "run the grid again")
    monkeypatch.undo()
    assert results.read_bytes() == before
    assert temporary_files(folder) == []


def test_a_full_disk_while_writing_weights_stops_the_grid(finished, monkeypatch, capsys):
    import xtune.run_folder

    folder = finished.parent
    before = snapshot(folder / "results")
    runs_before = snapshot(folder / "runs")

    def save_weights(model, path):
        Path(path).write_bytes(b"\x89HDF half a file")
        raise DISK_FULL

    monkeypatch.setattr(xtune.run_folder, "save_model_weights", save_weights)
    code, _, err = run_cli(["grid", finished], capsys)
    assert_user_error(code, err, "disk full", "run the grid again")
    assert snapshot(folder / "results") == before  # no failed line for a disk problem
    assert snapshot(folder / "runs") == runs_before  # its unfinished folder was removed
    assert temporary_files(folder) == []


# ---------------------------------------------------------------- report


def test_a_full_disk_while_writing_the_report_keeps_the_previous_one(finished, monkeypatch, capsys):
    folder = finished.parent
    code, out, _ = run_cli(["report", folder / "results"], capsys)
    assert code == 0
    report = Path(out.strip())
    before = {**snapshot(folder / "results"), "report": report.read_bytes()}
    monkeypatch.setattr(os, "fsync", lambda descriptor: (_ for _ in ()).throw(DISK_FULL))
    code, _, err = run_cli(["report", folder / "results"], capsys)
    assert_user_error(code, err, "disk full")
    monkeypatch.undo()
    assert {**snapshot(folder / "results"), "report": report.read_bytes()} == before
    assert temporary_files(folder) == []


# ---------------------------------------------------------------- read-only results folder


def make_read_only(monkeypatch, folder: Path) -> None:
    """Writes under `folder` fail as on a read-only mount (chmod does not stop root)."""
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))
    real_open, real_os_open = io.open, os.open

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        return Path(os.fsdecode(path)).resolve().is_relative_to(folder.resolve())

    def open_file(file, mode="r", *args, **kwargs):
        if inside(file) and set(mode) & set("wax+"):
            raise read_only
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise read_only
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_file)  # Path.open
    monkeypatch.setattr(builtins, "open", open_file)
    monkeypatch.setattr(os, "open", os_open)


def test_a_read_only_results_folder_is_one_line(finished, monkeypatch, capsys):
    results = finished.parent / "results"
    before = snapshot(results)
    make_read_only(monkeypatch, results)
    code, out, err = run_cli(["grid", finished, "--dry-run"], capsys)
    assert code == 0 and "to run now: 1" in out  # reading is fine
    code, _, err = run_cli(["grid", finished], capsys)
    assert_user_error(code, err, "results.jsonl", "read-only file system")
    code, _, err = run_cli(["report", results], capsys)
    assert_user_error(code, err, "read-only file system")
    monkeypatch.undo()
    assert snapshot(results) == before


# ---------------------------------------------------------------- a real full / read-only disk

REAL_DISK = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from pathlib import Path
    from xtune.grid.results_file import ResultsFile
    from xtune.grid.storage import StorageError, write_text_atomically

    mount = Path(sys.argv[1])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    results = ResultsFile(mount / "results")
    results.append({"run_id": "a", "status": "ok"})
    write_text_atomically(mount / "report.md", "# old report\\n")
    before = results.path.read_bytes()
    with open(mount / "filler", "wb", buffering=0) as filler:  # fill the disk up
        try:
            while True:
                filler.write(b"x" * 4096)
        except OSError:
            pass
    outcome = {}
    for name, action in {
        "append": lambda: results.append({"run_id": "b", "padding": "x" * 20000}),
        "report": lambda: write_text_atomically(mount / "report.md", "y" * 20000),
    }.items():
        try:
            action()
            outcome[name] = "written"
        except StorageError as error:
            outcome[name] = str(error)
    outcome["results_intact"] = results.path.read_bytes() == before
    outcome["report_intact"] = (mount / "report.md").read_text() == "# old report\\n"
    outcome["files"] = sorted(p.name for p in mount.rglob("*"))
    os.remove(mount / "filler")
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    try:
        with ResultsFile(mount / "results").exclusive():
            outcome["read_only"] = "locked"
    except StorageError as error:
        outcome["read_only"] = str(error)
    print(json.dumps(outcome))
    """
)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_real_full_and_read_only_tmpfs(tmp_path):
    """The same on a real 64 KiB tmpfs, in a private mount namespace (where allowed)."""
    mount = tmp_path / "mount"
    mount.mkdir()
    repository = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", REAL_DISK, str(mount)],
        capture_output=True,
        text=True,
        cwd=repository,
        timeout=120,
    )
    if done.returncode != 0 and "mount" in done.stderr and "Traceback" in done.stderr:
        if "permission denied" in done.stderr.lower() or "not permitted" in done.stderr:
            pytest.skip("mounting a tmpfs is not allowed here")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert "results.jsonl: cannot append a result line: no space left" in outcome["append"]
    assert "report.md: cannot write: no space left" in outcome["report"]
    assert outcome["results_intact"] and outcome["report_intact"]
    assert outcome["files"] == ["filler", "report.md", "results", "results.jsonl"]
    assert "read-only file system" in outcome["read_only"]
