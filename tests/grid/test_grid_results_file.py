"""results.jsonl: whole lines only; an interrupted last line is ignored, then cut off."""

from __future__ import annotations

import json

import pytest

from xtune.config import ConfigError
from xtune.grid.results_file import ResultsFile


def test_append_then_read_round_trips(tmp_path):
    results = ResultsFile(tmp_path / "grid")
    assert results.read().lines == []
    results.append({"run_id": "a", "status": "ok", "text": "甲\n乙"})
    results.append({"run_id": "b", "status": "failed", "value": float("nan")})
    content = results.read()
    assert [line["run_id"] for line in content.lines] == ["a", "b"]
    assert content.lines[0]["text"] == "甲\n乙"
    assert results.path.read_text(encoding="utf-8").count("\n") == 2


def test_an_incomplete_last_line_is_ignored_then_repaired(tmp_path):
    results = ResultsFile(tmp_path)
    results.append({"run_id": "a", "status": "ok"})
    with results.path.open("a", encoding="utf-8") as file:
        file.write('{"run_id": "b", "stat')  # the process died inside write()
    content = results.read()
    assert list(content.by_run_id) == ["a"]
    assert content.incomplete_tail == len('{"run_id": "b", "stat')
    assert results.repair() == content.incomplete_tail
    assert results.repair() == 0
    results.append({"run_id": "b", "status": "ok"})
    lines = results.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["a", "b"]


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path):
    results = ResultsFile(tmp_path)
    results.path.write_text('{"run_id": "a"}\nnot json\n{"run_id": "b"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        results.read()


def test_two_writers_cannot_hold_the_folder(tmp_path):
    results = ResultsFile(tmp_path)
    with results.exclusive():
        with pytest.raises(ConfigError, match="another `xtune grid` process"):
            with ResultsFile(tmp_path).exclusive():
                pass
    with results.exclusive():  # released again
        pass
