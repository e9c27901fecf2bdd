"""The runner: plan, --max-runs, failures recorded while the grid goes on, data tokenized once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.grid.grid_helpers import TINY_ENCODER, read_lines, tiny_base, write_grid
from xtune.data.readers import DataError
from xtune.grid.prepared_data_cache import PreparedDataCache
from xtune.grid.runner import run_grid
from xtune.grid.spec import load_grid

# The mean-pooling head leaves the BERT pooler without gradients; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Gradients do not exist")

RESULT_FIELDS = {
    "grid",
    "row",
    "overrides",
    "seed",
    "history",
    "best_epoch",
    "final_epoch",
    "best",
    "wall_seconds",
    "steps_per_second",
    "device",
    "versions",
    "git_commit",
    "config",
    "encoder",
}


@pytest.fixture(scope="module")
def failing_grid(tiny_data, token_cache, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("failing_grid")
    grid = {
        "name": "failing",
        "output": str(folder / "results"),
        "base": tiny_base(tiny_data, folder / "runs", token_cache),
        "seeds": [0],
        "variants": {
            "baseline": {},
            "single-label loss": {"loss": {"name": "softmax_ce"}},  # on multi-label rows
            "nan": {"optimizer.learning_rate": 1e30},
        },
    }
    return write_grid(folder / "failing.yaml", grid)


def test_dry_run_shows_the_plan_and_writes_nothing(failing_grid, capsys):
    assert run_grid(failing_grid, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "3 rows x 1 seeds (0) = 3 runs" in out
    assert "single-label loss" in out and "to run now: 3" in out
    assert not (failing_grid.parent / "results").exists()


def test_failed_runs_are_recorded_and_the_grid_goes_on(failing_grid, capsys):
    results = failing_grid.parent / "results" / "results.jsonl"
    assert run_grid(failing_grid, max_runs=1) == 0
    assert [line["row"] for line in read_lines(results)] == ["baseline"]

    assert run_grid(failing_grid) == 1  # 1: the grid has failed runs
    lines = read_lines(results)
    assert [(line["row"], line["status"]) for line in lines] == [
        ("baseline", "ok"),
        ("single-label loss", "failed"),
        ("nan", "failed"),
    ]
    assert "single-label" in lines[1]["error"] and "train.csv" in lines[1]["error"]
    assert "non-finite" in lines[2]["error"] or "nan" in lines[2]["error"].lower()

    ok = lines[0]
    assert RESULT_FIELDS <= set(ok)
    assert ok["grid"] == "failing" and ok["overrides"] == {} and ok["seed"] == 0
    assert ok["final_epoch"] == len(ok["history"]) == 1
    assert {"val_subset_accuracy", "val_micro_f1", "train_loss"} <= set(ok["history"][0])
    assert ok["encoder"].startswith("random BERT")
    assert ok["versions"]["tensorflow"] and ok["steps_per_second"] > 0
    assert math.isclose(ok["best"]["subset_accuracy"], ok["history"][0]["val_subset_accuracy"])

    capsys.readouterr()
    assert run_grid(failing_grid) == 1  # a rerun trains nothing and keeps the failures
    assert "recorded: 1 ok, 2 failed" in capsys.readouterr().out
    assert len(read_lines(results)) == 3


def test_a_missing_data_file_fails_before_any_training(tiny_data, tmp_path):
    base = tiny_base(tmp_path / "nowhere", tmp_path / "runs")
    path = write_grid(tmp_path / "g.yaml", {"base": base, "output": str(tmp_path / "out")})
    with pytest.raises(DataError, match=r"train.csv: not found .*--set data.root"):
        run_grid(path)
    assert run_grid(path, overrides=[f"data.root={tiny_data}"], dry_run=True) == 0


def test_prepared_data_is_shared_by_runs_with_the_same_data_and_tokenizer(
    tiny_data, token_cache, tmp_path
):
    base = tiny_base(tiny_data, tmp_path, token_cache)
    grid = {
        "base": base,
        "variants": {
            "baseline": {},
            "lr": {"optimizer.learning_rate": 1e-2},
            "deeper encoder, same vocabulary": {"encoder": {**TINY_ENCODER, "num_layers": 2}},
            "bucket padding": {"data.padding": "bucket"},
            "shorter": {"data.max_length": 12},
        },
    }
    spec = load_grid(write_grid(tmp_path / "g.yaml", grid))
    cache = PreparedDataCache()
    prepared = [cache.get(run.config) for run in spec.runs[:4]]
    first = prepared[0][0]
    assert prepared[0][1] > 0
    for data, seconds in prepared[1:]:
        assert data is first and seconds == 0.0
    assert cache.hits == 3 and len(cache.prepare_seconds) == 1
    # Another max_length is another key (checked without paying for its tokenization).
    shorter = spec.runs[4].config
    assert shorter.data.max_length == 12
    assert cache.data_key(shorter, cache.tokenizer_of(shorter)) not in cache.prepared


def test_the_command_line_reports_a_typo_and_trains_nothing(tiny_data, tmp_path, capsys):
    from xtune.cli import main

    grid = {
        "base": tiny_base(tiny_data, tmp_path / "runs"),
        "output": str(tmp_path / "out"),
        "variants": {"baseline": {}, "typo": {"head.unit": [8]}},
    }
    path = write_grid(tmp_path / "typo.yaml", grid)
    assert main(["grid", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"{path}: variant 'typo': override 'head.unit'" in error
    assert "valid keys" in error and "units" in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
