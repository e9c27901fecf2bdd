"""A run folder's small JSON files damaged after training, and a predict output that names a
folder: one line naming the file, exit 2, nothing written (on the committed pre-tasks fixture:
nothing trains)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.reliability.helpers import assert_user_error, run_cli, snapshot

FIXTURE = Path(__file__).parent.parent / "fixtures" / "run_folder_v1"


@pytest.mark.parametrize("name", ["labels.json", "tokenizer.json", "encoder.json"])
def test_a_truncated_json_file_of_a_run_folder_is_one_line(tmp_path, capsys, name):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    text = (run / name).read_text(encoding="utf-8")
    (run / name).write_text(text[: len(text) // 2], encoding="utf-8")
    before = snapshot(run)
    code, _, err = run_cli(["export", run, tmp_path / "export"], capsys)
    line = assert_user_error(code, err, f"{run / name}: damaged, not the JSON training wrote")
    assert "retrain, or restore the file" in line
    assert snapshot(run) == before and not (tmp_path / "export").exists()


def test_predict_output_naming_a_folder_is_one_line(tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("title,body\n物业,小区物业乱收费\n", encoding="utf-8")
    folder = tmp_path / "out"
    folder.mkdir()
    code, _, err = run_cli(["predict", FIXTURE, "--input", rows, "--output", folder], capsys)
    assert_user_error(code, err, f"{folder}: --output is a folder; name the file to write")
    assert list(folder.iterdir()) == []
