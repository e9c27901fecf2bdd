"""Kill `xtune grid` mid-grid, start it again: every run recorded exactly once, report exact.

The killed grid runs in a subprocess; the rerun runs in this process (TensorFlow is already
imported here, which keeps the test short).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.grid.grid_helpers import markdown_table, read_lines, tiny_base, write_grid
from xtune.grid.report import write_report
from xtune.grid.runner import run_grid
from xtune.grid.spec import load_grid

SECONDS_TO_FIRST_LINE = 300


def grid_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "xtune.cli", "grid", str(path)]


def wait_for_lines(results: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SECONDS_TO_FIRST_LINE
    while time.monotonic() < deadline:
        if results.is_file() and results.read_bytes().count(b"\n") >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"xtune grid exited ({process.returncode}) before writing a line")
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"no result line within {SECONDS_TO_FIRST_LINE} s")


def test_a_killed_grid_resumes_and_records_each_run_once(tiny_data, token_cache, tmp_path, capsys):
    grid = {
        "name": "resume",
        "output": str(tmp_path / "results"),
        "base": tiny_base(tiny_data, tmp_path / "runs", token_cache),
        "seeds": [0, 1],
    }
    path = write_grid(tmp_path / "resume.yaml", grid)
    results = tmp_path / "results" / "results.jsonl"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    with (tmp_path / "first.log").open("w") as log:
        process = subprocess.Popen(
            grid_command(path), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=environment
        )
        wait_for_lines(results, 1, process)
        process.send_signal(signal.SIGKILL)  # no clean-up: like a crash or a lost machine
        process.wait()
    before = results.read_text(encoding="utf-8")
    assert before.count("\n") == 1, "the kill should land mid-grid"
    with results.open("a", encoding="utf-8") as file:
        file.write('{"grid": "resume", "run_id": "0123')  # as if killed inside write()

    capsys.readouterr()
    assert run_grid(path) == 0
    assert "removed an incomplete last line" in capsys.readouterr().out

    lines = read_lines(results)
    assert results.read_text(encoding="utf-8").startswith(before)  # finished lines untouched
    planned = [run.run_id for run in load_grid(path).runs]
    assert sorted(line["run_id"] for line in lines) == sorted(planned)  # each exactly once
    assert all(line["status"] == "ok" for line in lines)

    # The report of those real results: mean and sample variance, recomputed here.
    text = Path(write_report(tmp_path / "results")).read_text(encoding="utf-8")
    (cell,) = markdown_table(text, "Cells")
    values = np.array([line["best"]["subset_accuracy"] for line in lines])
    shown = cell["val-acc (dev subset_accuracy) mean ± std"]
    shown_mean = float(shown.strip("*").split(" ± ")[0])
    assert shown_mean == pytest.approx(values.mean(), abs=5e-5)
    assert cell["n"] == "2"
    if values.var(ddof=1) > 0:
        assert float(cell["V(val-acc)"]) == pytest.approx(values.var(ddof=1), rel=1e-3)
    else:
        assert float(cell["V(val-acc)"]) == 0.0
