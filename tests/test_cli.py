"""The command line: a user's mistake is one line on stderr and exit 2; a bug, or `--debug`,
keeps its traceback."""

from __future__ import annotations

import errno
import json

import pytest
import yaml

from tests.conftest import sample_run_config
from tests.reliability.helpers import assert_user_error, run_cli
from xtune.cli import build_parser, main


def write_config(tmp_path, **sections):
    """A valid run config on the sample data, with whole sections replaced."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**sample_run_config(tmp_path), **sections}), encoding="utf-8")
    return path


def failing_train(error: BaseException):
    def train(*args, **kwargs):
        raise error

    return train


def test_debug_is_accepted_before_and_after_the_command():
    assert build_parser().parse_args(["--debug", "report", "r"]).debug is True
    assert build_parser().parse_args(["report", "r", "--debug"]).debug is True
    assert build_parser().parse_args(["report", "r"]).debug is False


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    for argv in (["train", missing], ["grid", missing, "--dry-run"]):
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, str(missing), "not found")


def test_a_config_folder_or_unreadable_file_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["train", tmp_path], capsys)
    assert_user_error(code, err, str(tmp_path), "is a folder, not a config file")


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    from xtune.config import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        main(["--debug", "train", str(tmp_path / "nope.yaml")])
    with pytest.raises(ConfigError, match="not found"):
        main(["train", str(tmp_path / "nope.yaml"), "--debug"])


@pytest.mark.parametrize(
    "error, needles",
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "data/x.csv"), ["x.csv"]),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/results"), ["/ro/results"]),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "data/"), ["data/", "directory"]),
        (
            OSError(errno.ENOSPC, "No space left on device", "runs/a/model.weights.h5"),
            ["disk full while writing runs/a/model.weights.h5"],
        ),
        (OSError(errno.EROFS, "Read-only file system", "runs/a"), ["runs/a", "Read-only"]),
        (FileExistsError("runs/a already holds a finished run"), ["already holds"]),
    ],
)
def test_os_errors_on_user_paths_are_one_line(tmp_path, capsys, monkeypatch, error, needles):
    monkeypatch.setattr("xtune.training.trainer.train", failing_train(error))
    code, _, err = run_cli(["train", write_config(tmp_path)], capsys)
    assert_user_error(code, err, *needles)


def test_an_encoder_that_fails_to_load_is_one_line(tmp_path, capsys):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 512}), "utf-8")
    config = write_config(tmp_path, encoder={"name": "hf", "path": str(folder)})
    code, _, err = run_cli(["train", config], capsys)
    assert_user_error(code, err, str(folder))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "error",
    [RuntimeError("a bug"), KeyError("bug"), OSError(errno.EIO, "Input/output error", "x")],
)
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, error):
    monkeypatch.setattr("xtune.training.trainer.train", failing_train(error))
    with pytest.raises(type(error)):
        main(["train", str(write_config(tmp_path))])
