"""Run folders: a finished one is never removed or reused; an unfinished one only by its owner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.grid.grid_helpers import read_lines, tiny_base, write_grid
from tests.reliability.helpers import snapshot
from xtune.grid.results_file import ResultsFile
from xtune.grid.runner import OWNER_FILE, GridSession, run_grid
from xtune.grid.spec import load_grid

pytestmark = pytest.mark.filterwarnings("ignore:Gradients do not exist")


def one_run_grid(folder: Path, tiny_data: Path, token_cache: Path) -> Path:
    grid = {
        "name": "folders",
        "output": str(folder / "first"),
        "base": tiny_base(tiny_data, folder / "runs", token_cache),
        "seeds": [0],
    }
    return write_grid(folder / "folders.yaml", grid)


def test_the_same_grid_with_another_output_keeps_the_first_grids_runs(
    tiny_data, token_cache, tmp_path, capsys
):
    path = one_run_grid(tmp_path, tiny_data, token_cache)
    assert run_grid(path) == 0
    (first,) = read_lines(tmp_path / "first" / "results.jsonl")
    first_folder = Path(first["run_dir"])
    kept = snapshot(first_folder)
    assert "metrics.json" in kept and OWNER_FILE in kept

    assert run_grid(path, output=tmp_path / "second") == 0
    (second,) = read_lines(tmp_path / "second" / "results.jsonl")
    assert second["run_id"] == first["run_id"]
    assert Path(second["run_dir"]) != first_folder  # trained into a folder of its own
    assert (Path(second["run_dir"]) / "metrics.json").is_file()
    assert snapshot(first_folder) == kept  # the first grid's run is untouched
    assert "holds a finished run that" in capsys.readouterr().out


@pytest.fixture
def session(tiny_data, tmp_path) -> tuple[GridSession, object]:
    """A session of a one-run grid, and its planned run (nothing trained)."""
    grid = {
        "name": "claims",
        "output": str(tmp_path / "results"),
        "base": tiny_base(tiny_data, tmp_path / "runs"),
        "seeds": [0],
    }
    spec = load_grid(write_grid(tmp_path / "claims.yaml", grid))
    return GridSession(spec, ResultsFile(spec.output), spec.runs), spec.runs[0]


def test_an_unfinished_folder_of_this_results_folder_is_replaced(session):
    grid, run = session
    folder = grid.claim_run_dir(run)
    (folder / "config.yaml").write_text("left by a killed run\n", encoding="utf-8")
    assert grid.claim_run_dir(run) == folder  # same name, emptied
    assert sorted(p.name for p in folder.iterdir()) == [OWNER_FILE]
    owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    assert owner["run_id"] == run.run_id
    assert owner["results"] == str(grid.results.path.resolve())


@pytest.mark.parametrize(
    "owner",
    [
        None,  # made by hand, `xtune train`, or an older xtune
        {"results": "/elsewhere/results.jsonl", "run_id": "x"},  # another results folder's
    ],
)
def test_a_folder_this_results_folder_did_not_make_is_left_alone(session, owner):
    grid, run = session
    folder = grid.claim_run_dir(run)
    (folder / OWNER_FILE).unlink()
    if owner is not None:
        owner["run_id"] = run.run_id
        (folder / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    (folder / "notes.txt").write_text("someone's\n", encoding="utf-8")
    before = snapshot(folder)
    claimed = grid.claim_run_dir(run)
    assert claimed == folder.with_name(folder.name + "-2")
    assert snapshot(folder) == before


def test_a_finished_folder_is_never_reused_even_its_own(session):
    grid, run = session
    folder = grid.claim_run_dir(run)
    (folder / "metrics.json").write_text("{}\n", encoding="utf-8")  # killed before its line
    before = snapshot(folder)
    assert grid.claim_run_dir(run) == folder.with_name(folder.name + "-2")
    assert grid.claim_run_dir(run) == folder.with_name(folder.name + "-2")  # own, unfinished
    assert snapshot(folder) == before
