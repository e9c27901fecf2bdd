"""The command line: a user's mistake is one line on stderr and exit 2; a bug, or `--debug`,
keeps its traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import sample_run_config
from tests.reliability.helpers import assert_user_error, run_cli
from xtune.cli import build_parser, main
from xtune.components import KINDS


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


# ---------------------------------------------------------------- fast, quiet, discoverable

REPOSITORY = Path(__file__).resolve().parents[1]


def run_python(code: str, *args: str, path: str = "") -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter at the repository root (the worktree's xtune first)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [path, "."]))}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


NO_TENSORFLOW = """
import contextlib, io, json, sys
from xtune.cli import main

loaded = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:  # --help, --version
            code = exit.code
    heavy = [m for m in ("tensorflow", "keras") if m in sys.modules]
    loaded.append([" ".join(argv), code, heavy])
print(json.dumps(loaded))
"""


def config_file(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_help_version_list_report_and_config_mistakes_never_import_tensorflow(tmp_path):
    """Issue 22: none of these imports TensorFlow (or Keras), a mistake in a component's
    arguments and a grid's dry run included: the config checks through the component catalog."""
    from tests.grid.test_grid_report import ok_line

    results = tmp_path / "reports" / "toy"
    results.mkdir(parents=True)
    lines = [ok_line("baseline", 0, seed, 0.6 + seed / 100, {}) for seed in (0, 1)]
    (results / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    bad_key = write_config(tmp_path, data={"train": "x.csv", "labelz": "labels"})
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("data: {train: [x.csv\n", encoding="utf-8")
    raw = sample_run_config(tmp_path)
    unknown_argument = {**raw, "loss": {"name": "bce", "gama": 2}}
    out_of_range = {**raw, "loss": {"name": "bce", "label_smoothing": 2}}
    rows = {"baseline": {}, "focal": {"loss.name": "focal"}, "textcnn": {"head.name": "textcnn"}}
    grid = {"name": "toy", "base": raw, "seeds": [0], "variants": rows}
    commands = [
        ["--help"],
        ["--version"],
        ["list", "metrics"],
        ["report", str(results), "--output", str(tmp_path / "toy.md")],
        ["report", str(results), "--format", "csv"],
        ["train", str(bad_key)],
        ["train", str(bad_yaml)],
        ["grid", str(tmp_path / "missing.yaml"), "--dry-run"],
        ["train", str(config_file(tmp_path / "gama.yaml", unknown_argument))],
        ["train", str(config_file(tmp_path / "smoothing.yaml", out_of_range))],
        ["grid", str(config_file(tmp_path / "grid.yaml", grid)), "--dry-run"],
        ["list"],
        *(["list", kind] for kind in KINDS),
    ]
    done = run_python(NO_TENSORFLOW, json.dumps(commands))
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    expected_codes = [0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 0, 0] + [0] * len(KINDS)
    assert [code for _, code, _ in loaded] == expected_codes, loaded
    assert not any(heavy for _, _, heavy in loaded), loaded


PARSE_WITHOUT_TENSORFLOW = """
import json, sys
from xtune.config import parse_run_config

for raw in json.loads(sys.argv[1]):
    parse_run_config(raw)
print(json.dumps([m for m in ("tensorflow", "keras", "sklearn") if m in sys.modules]))
"""


def test_a_valid_config_parses_without_tensorflow(tmp_path):
    """Every check of a valid config (components, tasks and their rules, samplers, the
    hierarchy, encoder limits) runs without TensorFlow, Keras or scikit-learn."""
    from tests.tasks.task_data import multitask_config

    single = sample_run_config(
        tmp_path,
        head={"name": "rnn", "cell": "gru", "units": [8]},
        loss={"name": "focal", "gamma": 1.0},
        schedule={"name": "linear", "warmup_ratio": 0.1},
        adversarial={"name": "pgd"},
        hierarchy={"mode": "ancestors"},
    )
    single["training"]["decision_rule"] = "tuned"
    pair = {"train": "a.csv", "text_pair": "text_pair"}
    tasks = {
        "sst": {"type": "classification", "data": {"train": "s.csv"}, "loss": "softmax_ce"},
        "sts": {"type": "bi_encoder", "output": "cosine", "loss": "cosent", "data": pair},
        "score": {"type": "regression", "loss": {"name": "mse", "low": 1}, "data": pair},
    }
    multi = multitask_config(tmp_path, tasks, sampler={"name": "sequential", "order": [2, 0, 1]})
    done = run_python(PARSE_WITHOUT_TENSORFLOW, json.dumps([single, multi]))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


FAKE_TENSORFLOW = """
import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written\\n")
os.write(2, b"I0000 00:00:1796426758.352728    4697 port.cc:153] oneDNN custom operations\\n")
os.write(2, b"a line of its own\\n")

class config:
    def list_physical_devices(kind):
        os.write(2, b"E0000 00:00:1796426825.364829    5412 a.cc:52] failed call to cuInit\\n")
        return []
"""
FILTERED_IMPORT = """
import sys
from xtune.quiet_tensorflow import tensorflow_start_up_filtered

with tensorflow_start_up_filtered():
    import tensorflow
print("xtune's first line", file=sys.stderr)
import tensorflow  # a second import prints nothing
print(tensorflow.__loader__.__class__.__name__, tensorflow.__spec__.loader is tensorflow.__loader__)
"""


def test_tensorflow_start_up_lines_are_filtered_and_others_kept(tmp_path):
    """A stand-in `tensorflow` writes absl start-up lines to descriptor 2 as the real one does
    (checked by hand with TensorFlow 2.21: oneDNN, cudart and cuInit lines)."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW, encoding="utf-8")
    done = run_python(FILTERED_IMPORT, path=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "a line of its own\nxtune's first line\n"
    assert done.stdout.split() == ["SourceFileLoader", "True"]  # its own loader, not ours


def test_start_up_noise_is_recognised_and_nothing_else():
    from xtune.quiet_tensorflow import is_start_up_noise

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796426758.353049    4697 cudart_stub.cc:31] Could not find cuda drivers",
        "W0000 00:00:1796426758.353049    4697 x.cc:1] a warning",
        "E0000 00:00:1796426825.364829    5412 cuda_platform.cc:52] failed call to cuInit: (303)",
    ]
    kept = [
        "E0000 00:00:1796426825.364829    5412 x.cc:52] a real error",
        "Traceback (most recent call last):",
        "xtune train: error: ...",
    ]
    assert all(is_start_up_noise(line) for line in noise)
    assert not any(is_start_up_noise(line) for line in kept)


def test_version_is_the_package_version(capsys):
    import tomllib

    import xtune

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"xtune {xtune.__version__}\n"
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text("utf-8"))
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "xtune.__version__"}
    assert project["project"]["scripts"] == {"xtune": "xtune.cli:main"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_list_shows_every_registered_name(kind, capsys):
    """Each kind lists every name its registry holds; arguments with their defaults."""
    import importlib

    _, module, attribute = KINDS[kind]
    registry = getattr(importlib.import_module(module), attribute)
    names = registry.names() if hasattr(registry, "names") else list(registry)  # metrics: a dict
    code, out, _ = run_cli(["list", kind], capsys)
    assert code == 0
    assert out.startswith(f"{kind} (config key: ")
    shown = {line.split()[0].split("(")[0] for line in out.splitlines()[1:] if line[2] != " "}
    assert set(names) <= shown


def test_list_shows_arguments_and_defaults(capsys):
    code, out, _ = run_cli(["list", "loss"], capsys)  # the singular works too
    assert code == 0
    assert "  focal(alpha=None, gamma=2.0, label_smoothing=0.0)\n" in out
    code, out, _ = run_cli(["list", "encoders"], capsys)
    assert "hf(path (required)," in out


def test_init_writes_a_template_that_validates_and_dry_runs(tmp_path, capsys, monkeypatch):
    from xtune.config import parse_run_config

    path = tmp_path / "run.yaml"
    code, out, _ = run_cli(["init", path], capsys)
    assert code == 0 and str(path) in out
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    config = parse_run_config(raw, str(path))
    assert config.encoder.name == "minilm-l6" and config.data.text_pair == "body"
    # A dry run of it (data files, every value), from the repository (the bundled sample).
    monkeypatch.chdir(REPOSITORY)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump({"name": "t", "base": raw, "seeds": [0], "variants": {"baseline": {}}}),
        encoding="utf-8",
    )
    code, out, err = run_cli(["grid", grid, "--dry-run", "--output", tmp_path / "r"], capsys)
    assert code == 0, err
    assert "1 rows x 1 seeds (0) = 1 runs" in out
    # An existing file is kept unless --force.
    path.write_text("mine", encoding="utf-8")
    code, _, err = run_cli(["init", path], capsys)
    assert_user_error(code, err, str(path), "already exists", "--force")
    assert path.read_text(encoding="utf-8") == "mine"
    assert run_cli(["init", path, "--force"], capsys)[0] == 0
    assert path.read_text(encoding="utf-8").startswith("# An xtune run config")
