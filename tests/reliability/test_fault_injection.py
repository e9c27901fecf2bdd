"""Kill -9 a real tiny grid at seeded points, rerun after each kill: no run is lost or doubled.

Each trial is a separate process running `xtune grid` that SIGKILLs itself at the K-th time it
reaches a phase (`XTUNE_FAULT_INJECT=PHASE:K`, see `xtune.faults`): as a run starts,
half-way through appending its result line, or after writing its weights file but before
renaming it into place. The trials are forked from one "zygote" process that has imported
TensorFlow, xtune and the CLI but run nothing, so a trial costs its runs, not a 10 s import.
When a grid is complete, the next trial starts the same grid with another `--output` (its runs
go to new folders; the first grid's finished folders must survive untouched). At the end every
grid is run to completion without faults, and then:

- every line of every results file parses, and each planned run is recorded exactly once, ok;
- every ok run's folder is complete, and its weights match the sha256 that its result line and
  its metrics.json recorded;
- no finished run folder seen after any trial ever disappears or changes.

`python -m tests.reliability.test_fault_injection ROOT SEED KILLS` runs the zygote.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy

KILLS = 12
MAX_TRIALS = 20  # trials whose kill point is never reached (nothing left to run) do not count
SEED = 14
PHASES = ("run_start", "results_append", "weights_write")
# Every (phase, occurrence) pair once per round, in a seeded order: each pair is tried at
# least twice in 12 kills (the first or the second run of a grid, fresh or resumed), where a
# draw at random needed more trials to reach each one.
KILL_POINTS = tuple((phase, occurrence) for phase in PHASES for occurrence in (1, 2))
REPOSITORY = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the zygote (its own process)


def write_fault_grid(root: Path) -> Path:
    from tests.grid.grid_helpers import tiny_base, write_grid, write_tiny_data

    base = tiny_base(write_tiny_data(root / "data"), root / "runs", root / "token_cache")
    base["training"]["save_weights"] = True
    grid = {
        "name": "faults",
        "output": str(root / "results-0"),
        "base": base,
        "seeds": [0],
        "variants": {"a": {}, "b": {"optimizer.learning_rate": 3e-3}},
    }
    return write_grid(root / "faults.yaml", grid)


def run_trial(grid: Path, output: Path, fault: str | None, log: Path) -> int:
    """`xtune grid GRID --output OUTPUT` in a forked child; its exit code (-9: killed)."""
    from xtune.cli import main

    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 70
        try:
            descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(descriptor, 1)
            os.dup2(descriptor, 2)
            if fault:
                os.environ["XTUNE_FAULT_INJECT"] = fault
            code = main(["grid", str(grid), "--output", str(output)])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def finished_folders(runs: Path) -> dict[str, dict[str, str]]:
    """sha256 of the files of every finished run folder (one holding metrics.json)."""
    return {
        str(metrics.parent): {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(metrics.parent.iterdir())
            if path.is_file()
        }
        for metrics in sorted(runs.rglob("metrics.json"))
    }


def zygote(root: Path, seed: int, kills: int) -> dict:
    """Run the trials and the final clean runs; return what happened, for the test to check."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow  # noqa: F401  (imported, never run, before forking)

    import xtune.cli  # noqa: F401
    import xtune.grid.report  # noqa: F401
    import xtune.grid.runner  # noqa: F401
    import xtune.training.trainer  # noqa: F401

    rng = random.Random(seed)
    grid = write_fault_grid(root)
    campaign, trials, lost_folders = 0, [], []
    seen: dict[str, dict[str, str]] = {}
    schedule: list[tuple[str, int]] = []
    while sum(trial["killed"] for trial in trials) < kills and len(trials) < MAX_TRIALS:
        if not schedule:
            schedule = rng.sample(KILL_POINTS, len(KILL_POINTS))
        phase, occurrence = schedule.pop()
        output = root / f"results-{campaign}"
        started = time.perf_counter()
        code = run_trial(grid, output, f"{phase}:{occurrence}", root / f"trial-{len(trials)}.log")
        trials.append(
            {
                "phase": phase,
                "occurrence": occurrence,
                "campaign": campaign,
                "code": code,
                "killed": code == -9,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        now = finished_folders(root / "runs")
        lost_folders += [folder for folder in seen if now.get(folder) != seen[folder]]
        seen.update(now)
        if code == 0:  # that grid is complete: the same grid again, into another results folder
            campaign += 1
    finals = [
        run_trial(grid, root / f"results-{c}", None, root / f"final-{c}.log")
        for c in range(campaign + 1)
    ]
    return {"trials": trials, "finals": finals, "lost_folders": lost_folders, "grid": str(grid)}


# ---------------------------------------------------------------- the test


def test_killed_grids_lose_and_double_no_run(tmp_path):
    from xtune.grid.spec import load_grid
    from xtune.run_folder import REQUIRED_FILES, WEIGHTS_FILE

    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.test_fault_injection", str(tmp_path)]
        + [str(SEED), str(KILLS)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    trials = summary["trials"]
    kills = {f"{phase}:{occurrence}": 0 for phase, occurrence in KILL_POINTS}
    for trial in trials:
        assert trial["code"] in (-9, 0), f"a trial ended with {trial}: see trial logs"
        kills[f"{trial['phase']}:{trial['occurrence']}"] += trial["killed"]
    print(
        f"\nfault injection: {len(trials)} trials, {sum(kills.values())} kills {kills}, "
        f"{len(summary['finals'])} grid(s), {time.perf_counter() - started:.0f} s"
    )
    # Every phase killed at its first and at its second occurrence (the grid's second run).
    assert sum(kills.values()) >= KILLS and all(kills.values()), kills
    assert summary["finals"] == [0] * len(summary["finals"])
    assert summary["lost_folders"] == []

    planned = sorted(run.run_id for run in load_grid(summary["grid"]).runs)
    folders = []
    for campaign in range(len(summary["finals"])):
        text = (tmp_path / f"results-{campaign}" / "results.jsonl").read_text(encoding="utf-8")
        assert text.endswith("\n")
        lines = [json.loads(line) for line in text.splitlines()]  # every line parses
        assert sorted(line["run_id"] for line in lines) == planned  # each run exactly once
        for line in lines:
            assert line["status"] == "ok", line.get("error")
            folder = Path(line["run_dir"])
            folders.append(folder)
            assert all((folder / name).is_file() for name in REQUIRED_FILES), folder
            assert not [p for p in folder.iterdir() if ".tmp" in p.name], folder
            digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
            assert digest == line["weights_sha256"]
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            assert metrics.get("weights_sha256", {}).get(WEIGHTS_FILE, digest) == digest
    assert len(set(folders)) == len(folders)  # no two grids share (or overwrote) a folder


if __name__ == "__main__":
    root, seed, kills = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(zygote(root, seed, kills)))
