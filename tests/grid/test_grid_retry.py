"""`--retry-failed` trains failed runs again; a data error every run shares stops the grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.grid.grid_helpers import read_lines, tiny_base, write_grid
from tests.reliability.helpers import assert_user_error, run_cli, snapshot
from xtune.grid.report import write_report
from xtune.grid.results_file import ResultsFile

pytestmark = pytest.mark.filterwarnings("ignore:Gradients do not exist")


def test_retry_failed_trains_the_failed_run_again_and_its_new_line_wins(
    tiny_data, token_cache, tmp_path, capsys
):
    """A row reading a broken train file fails alone (other rows read other data), is kept
    on a plain rerun, and is trained again with --retry-failed once the file is fixed."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train.csv").write_text("id,text\n1,甲乙\n", encoding="utf-8")  # no labels column
    shutil.copy(tiny_data / "dev.csv", broken / "dev.csv")
    grid = {
        "name": "retry",
        "output": str(tmp_path / "results"),
        "base": tiny_base(tiny_data, tmp_path / "runs", token_cache),
        "seeds": [0],
        "variants": {"good": {}, "broken data": {"data.root": str(broken)}},
    }
    path = write_grid(tmp_path / "retry.yaml", grid)
    code, out, _ = run_cli(["grid", path], capsys)
    assert code == 1
    results = tmp_path / "results" / "results.jsonl"
    good, failed = read_lines(results)
    assert (good["status"], failed["status"]) == ("ok", "failed")
    assert "train.csv" in failed["error"] and "labels" in failed["error"]
    assert failed["run_dir"] is None  # failed before it had a folder: none was made

    code, out, _ = run_cli(["grid", path], capsys)
    assert code == 1 and "--retry-failed trains them again" in out
    assert len(read_lines(results)) == 2

    shutil.copy(tiny_data / "train.csv", broken / "train.csv")
    code, out, _ = run_cli(["grid", path, "--retry-failed", "--dry-run"], capsys)
    assert code == 0 and "recorded: 1 ok, 1 failed (trained again); to run now: 1" in out
    code, out, _ = run_cli(["grid", path, "--retry-failed"], capsys)
    assert code == 0
    lines = read_lines(results)
    assert [line["status"] for line in lines] == ["ok", "failed", "ok"]  # appended, not edited
    assert lines[2]["run_id"] == failed["run_id"]
    assert ResultsFile(tmp_path / "results").read().by_run_id[failed["run_id"]]["status"] == "ok"
    report = Path(write_report(tmp_path / "results")).read_text(encoding="utf-8")
    assert "Runs: 2 ok, 0 failed" in report
    assert report.split("## Failed runs")[1].split("\n## ")[0].strip() == "None."


@pytest.mark.parametrize(
    ("train_csv", "named"),
    [
        ("id,text\n1,甲乙\n", ("train.csv", "labels")),  # unreadable: a column missing
        ("id,text,labels\n1,港港港,甲\n2,意意意,乙\n", ("dev.csv", "丙")),  # unknown label
    ],
    ids=["missing column", "unknown dev label"],
)
def test_a_data_error_every_run_shares_stops_the_grid_once(
    tiny_data, tmp_path, capsys, train_csv, named
):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text(train_csv, encoding="utf-8")
    shutil.copy(tiny_data / "dev.csv", data / "dev.csv")
    grid = {
        "name": "shared",
        "output": str(tmp_path / "results"),
        "base": tiny_base(data, tmp_path / "runs"),
        "seeds": [0, 1],
        "variants": {"a": {}, "b": {"optimizer.learning_rate": 1e-2}},
    }
    path = write_grid(tmp_path / "shared.yaml", grid)
    code, out, err = run_cli(["grid", path], capsys)
    line = assert_user_error(code, err, *named, "every run of grid 'shared'")
    assert "records nothing" in line
    assert out.count("] run ") == 1  # one run tried, not four
    assert snapshot(tmp_path / "results") == {"results.jsonl": snapshot_of_empty()}
    assert not any((tmp_path / "runs").rglob("*.json"))


def snapshot_of_empty() -> str:
    import hashlib

    return hashlib.sha256(b"").hexdigest()
