"""Bad grid inputs: one clear line, exit 2, and the results and run folders already there stay
byte-identical; the inputs that have a correct handling (a truncated last line, a report of
failed runs only) get it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.grid.grid_helpers import tiny_base, write_grid, write_tiny_data
from tests.reliability.helpers import assert_user_error, run_cli, snapshot
from xtune.grid.results_file import ResultsFile
from xtune.grid.runner import GridSession


@dataclass
class Grid:
    folder: Path
    path: Path  # the grid file: one row, one seed, recorded as failed
    results: Path  # its results folder, holding that run's failed line
    runs: Path  # training.output_dir, holding a finished run folder of an earlier grid
    raw: dict


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Grid:
    tiny_data = write_tiny_data(tmp_path_factory.mktemp("grid_inputs_data"))
    folder = tmp_path_factory.mktemp("grid_inputs")
    base = tiny_base(tiny_data, folder / "runs")
    raw = {"name": "inputs", "output": str(folder / "results"), "base": base, "seeds": [0]}
    path = write_grid(folder / "inputs.yaml", raw)
    finished = folder / "runs" / "inputs" / "00-base-seed0-000000000000"
    finished.mkdir(parents=True)
    for name in ("config.yaml", "model.weights.h5", "metrics.json"):
        (finished / name).write_text(f"{name} of an earlier grid\n", encoding="utf-8")
    from xtune.cli import main

    def out_of_memory(session, run):
        raise RuntimeError("OOM when allocating tensor (injected)")

    with pytest.MonkeyPatch.context() as patch:  # a failed line without paying for a run
        patch.setattr(GridSession, "prepare_data", out_of_memory)
        assert main(["grid", str(path)]) == 1
    return Grid(folder, path, folder / "results", folder / "runs", raw)


@pytest.fixture
def grid(recorded, tmp_path) -> Grid:
    """A fresh copy of the recorded grid for one test, so no case sees another's files."""
    folder = tmp_path / "grid"
    shutil.copytree(recorded.folder, folder)
    raw = json.loads(json.dumps(recorded.raw).replace(str(recorded.folder), str(folder)))
    path = write_grid(folder / "inputs.yaml", raw)
    return Grid(folder, path, folder / "results", folder / "runs", raw)


def grid_variant(grid: Grid, name: str, **changes) -> Path:
    return write_grid(grid.folder / f"{name}.yaml", {**grid.raw, **changes})


def duplicate_rows(grid: Grid) -> list:
    text = yaml.safe_dump({**grid.raw, "variants": {"a": {}}}, allow_unicode=True)
    text += "  a: {optimizer.learning_rate: 0.01}\n"  # the row name again
    path = grid.folder / "duplicate.yaml"
    path.write_text(text, encoding="utf-8")
    return ["grid", path]


def grid_file_in_gb18030(grid: Grid) -> list:
    text = yaml.safe_dump({**grid.raw, "description": "中文说明"}, allow_unicode=True)
    path = grid.folder / "gb18030.yaml"
    path.write_bytes(text.encode("gb18030"))
    return ["grid", path]


def python_tag(grid: Grid) -> list:
    path = grid.folder / "tag.yaml"
    text = yaml.safe_dump(grid.raw, allow_unicode=True)
    path.write_text(text + "description: !!python/object/apply:os.system [echo hi]\n", "utf-8")
    return ["grid", path, "--dry-run"]


def base_includes_itself(grid: Grid) -> list:
    (grid.folder / "loop.yaml").write_text("base: loop.yaml\n", encoding="utf-8")
    path = grid.folder / "looping.yaml"
    path.write_text(yaml.safe_dump({**grid.raw, "base": "loop.yaml"}), encoding="utf-8")
    return ["grid", path, "--dry-run"]


def row_sets_seed(grid: Grid) -> list:
    return ["grid", grid_variant(grid, "seed", variants={"a": {}, "s": {"training.seed": 3}})]


def same_config_twice(grid: Grid) -> list:
    variants = {
        "a": {},
        "b": {"optimizer.learning_rate": grid.raw["base"]["optimizer"]["learning_rate"]},
    }
    return ["grid", grid_variant(grid, "same", variants=variants)]


def unknown_only(grid: Grid) -> list:
    return ["grid", grid.path, "--only", "nope"]


def garbage_middle_line(grid: Grid) -> list:
    text = (grid.results / "results.jsonl").read_text(encoding="utf-8")
    (grid.results / "results.jsonl").write_text("garbage\n" + text, encoding="utf-8")
    return ["grid", grid.path]


def truncated_middle_line(grid: Grid) -> list:
    text = (grid.results / "results.jsonl").read_text(encoding="utf-8")
    (grid.results / "results.jsonl").write_text(text[:40] + "\n" + text, encoding="utf-8")
    return ["grid", grid.path]


def invalid_value(grid: Grid, dry_run: bool) -> list:
    base = json.loads(json.dumps(grid.raw["base"]))
    base["training"]["epochs"] = "five"
    return ["grid", grid_variant(grid, "invalid", base=base), *(["--dry-run"] if dry_run else [])]


def report_of_an_empty_folder(grid: Grid) -> list:
    (grid.folder / "empty").mkdir()
    return ["report", grid.folder / "empty"]


def report_of_an_incomplete_line_only(grid: Grid) -> list:
    (grid.folder / "cut").mkdir()
    (grid.folder / "cut" / "results.jsonl").write_text('{"run_id": "ab', encoding="utf-8")
    return ["report", grid.folder / "cut"]


CASES: dict[str, tuple[Callable[[Grid], list], tuple[str, ...]]] = {
    "duplicate row names": (duplicate_rows, ("duplicate.yaml", "'a' appears twice")),
    "grid file in GB18030": (grid_file_in_gb18030, ("gb18030.yaml", "not UTF-8")),
    "a python tag": (python_tag, ("tag.yaml", "python/object/apply", "not allowed")),
    "a base including itself": (base_includes_itself, ("looping.yaml", "includes itself")),
    "a row sets training.seed": (row_sets_seed, ("variant 's'", "training.seed")),
    "two rows, one config": (same_config_twice, ("rows 'a' and 'b'", "same config")),
    "unknown --only": (unknown_only, ("--only 'nope': no such row", "rows: 'base'")),
    "garbage middle line": (garbage_middle_line, ("results.jsonl: line 1 is not valid JSON",)),
    "truncated middle line": (truncated_middle_line, ("results.jsonl: line 1 is not valid",)),
    "invalid value": (lambda grid: invalid_value(grid, False), ("training.epochs", "five")),
    "invalid value, --dry-run": (lambda grid: invalid_value(grid, True), ("training.epochs",)),
    "report: empty folder": (report_of_an_empty_folder, ("results.jsonl: no results",)),
    "report: incomplete line only": (report_of_an_incomplete_line_only, ("no complete",)),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_grid_input_is_one_line_and_changes_nothing(grid, case, capsys):
    make, needles = CASES[case]
    argv = make(grid)
    before = snapshot(grid.folder)
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, *needles)
    assert snapshot(grid.folder) == before


def test_dry_run_and_run_refuse_an_invalid_value_with_the_same_message(grid, capsys):
    messages = []
    for dry_run in (True, False):
        code, _, err = run_cli(invalid_value(grid, dry_run), capsys)
        messages.append(assert_user_error(code, err))
    assert messages[0] == messages[1]


def test_a_second_grid_on_the_same_results_is_refused(grid, capsys):
    before = snapshot(grid.folder)
    with ResultsFile(grid.results).exclusive():
        code, _, err = run_cli(["grid", grid.path], capsys)
    assert_user_error(code, err, str(grid.results), "another `xtune grid` process")
    assert snapshot(grid.folder) == before


def test_a_truncated_last_line_is_cut_off_and_the_rest_kept(grid, capsys):
    results = grid.results / "results.jsonl"
    whole = results.read_bytes()
    results.write_bytes(whole + b'{"run_id": "0123')  # killed inside write()
    code, out, _ = run_cli(["grid", grid.path], capsys)
    assert code == 1  # the failed run stays recorded as failed, and is not run again
    assert "removed an incomplete last line" in out and "to run now: 0" in out
    assert results.read_bytes() == whole


def test_a_report_of_failed_runs_only(grid, capsys):
    code, out, _ = run_cli(["report", grid.results], capsys)
    assert code == 0
    report = Path(out.strip()).read_text(encoding="utf-8")
    assert "Runs: 0 ok, 1 failed" in report
    failed = report.split("## Failed runs")[1]
    assert "RuntimeError: OOM when allocating tensor (injected)" in failed
