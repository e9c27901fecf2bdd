"""Bad config files: one line naming the file and the key, exit 2, before anything trains.

Every "YAML:" kind of issue 14, through `xtune train CFG` and `xtune grid G --dry-run` (the
grid's base is the bad file), plus each value kind as a grid row's override. Nothing is
built: `train` is replaced by a function that fails the test, and earlier results and run
folders stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import sample_run_config
from tests.reliability.helpers import assert_user_error, run_cli, snapshot

BIG = 10**20


def set_key(raw: dict, dotted: str, value) -> dict:
    """`raw` with one dotted key replaced (a component given by name becomes a mapping)."""
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {"name": node[part]} if isinstance(node.get(part), str) else {}
        node = node[part]
    node[last] = value
    return raw


def dump(raw: dict) -> str:
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


# (id, dotted key, value, needle the one-line message must hold besides the file)
VALUE_KINDS = [
    ("unknown top-level key", "trainig", {"epochs": 1}, "did you mean 'training'"),
    ("unknown nested key", "training.shuffle_buffer", 10, "training.shuffle_buffer"),
    ("misspelled key", "training.epoch", 3, "did you mean 'epochs'"),
    ("misspelled component key", "head.pooling_mode", "mean", "did you mean 'pooling'"),
    ("epochs five", "training.epochs", "five", "training.epochs"),
    ("batch_size 0", "training.batch_size", 0, "training.batch_size"),
    ("batch_size 10**20", "training.batch_size", BIG, "training.batch_size"),
    ("batch_size '10**20'", "training.batch_size", "10**20", "training.batch_size"),
    ("eval_batch_size 0", "training.eval_batch_size", 0, "training.eval_batch_size"),
    ("negative lr", "optimizer.learning_rate", -1e-3, "optimizer.learning_rate"),
    ("quoted lr", "optimizer.learning_rate", "0.001", "without quotes"),
    ("unknown head", "head", "txtcnn", "head.name"),
    ("unknown loss", "loss", "bce_typo", "loss.name"),
    ("unknown metric", "training.metric", "accuracy", "training.metric"),
    ("max_length 1e8", "data.max_length", 1e8, "data.max_length"),
    ("max_length 10**8", "data.max_length", 10**8, "data.max_length"),
    ("epochs 1e26", "training.epochs", 1e26, "training.epochs"),
    ("combine sum", "head", {"name": "multi_layer", "combine": "sum"}, "head.combine"),
    ("filter_sizes []", "head", {"name": "textcnn", "filter_sizes": []}, "head.filter_sizes"),
    ("pooling avg", "head", {"name": "pooling", "pooling": "avg"}, "head.pooling"),
    ("max_length 2", "data.max_length", 2, "data.max_length"),
    ("max_length > positions", "data.max_length", 129, "positions for (128)"),
    ("empty label_separator", "data.label_separator", "", "data.label_separator"),
    ("negative warmup", "schedule", {"name": "linear", "warmup_steps": -1}, "warmup_steps"),
    ("focal gamma", "loss", {"name": "focal", "gamma": -2}, "loss.gamma"),
    ("pgd steps", "adversarial", {"name": "pgd", "steps": 0}, "adversarial.steps"),
    ("missing vocabulary", "encoder.vocabulary", "no/such/vocab.txt", "encoder.vocabulary"),
    ("nan lr", "optimizer.learning_rate", float("nan"), "finite"),
]


def text_kinds(raw: dict) -> list[tuple[str, bytes, str]]:
    """Kinds that need the file's text: (id, file bytes, needle)."""
    good = dump(raw)
    return [
        ("malformed syntax", (good + "training: [unclosed\n").encode(), "line"),
        ("duplicated key", (good + "training: {epochs: 2}\n").encode(), "'training' appears twice"),
        (
            "python tag",
            (good + "loss: !!python/object/apply:os.system ['echo hi']\n").encode(),
            "is not allowed",
        ),
        (
            "quoted lr 1e-3",
            good.replace("learning_rate: 0.001", 'learning_rate: "1e-3"').encode(),
            "learning_rate: expected float, got '1e-3' (a quoted string",
        ),
        ("GB18030 file", ("# 中文注释\n" + good).encode("gb18030"), "not UTF-8 (byte 0x"),
        ("top level a list", b"- data\n- training\n", "expected a mapping"),
    ]


@pytest.fixture
def guarded(tmp_path, monkeypatch):
    """tmp_path with finished runs and results to keep, and `train` that fails the test."""

    def no_training(*args, **kwargs):
        raise AssertionError("a config error must stop xtune before training starts")

    monkeypatch.setattr("xtune.training.trainer.train", no_training)
    old_run = tmp_path / "runs" / "old"
    old_run.mkdir(parents=True)
    (old_run / "metrics.json").write_text('{"subset_accuracy": 0.5}\n', encoding="utf-8")
    results = tmp_path / "reports" / "g"
    results.mkdir(parents=True)
    (results / "results.jsonl").write_text('{"run_id": "x", "status": "ok"}\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def all_kinds(tmp_path: Path) -> list[tuple[str, bytes, str, str]]:
    """(id, file bytes, key needle, other needle) for every kind."""
    kinds = []
    for kind, dotted, value, needle in VALUE_KINDS:
        raw = set_key(sample_run_config(tmp_path), dotted, value)
        kinds.append((kind, dump(raw).encode(), dotted.split(".")[0], needle))
    for kind, data, needle in text_kinds(sample_run_config(tmp_path)):
        kinds.append((kind, data, "", needle))
    return kinds


KIND_IDS = [kind for kind, *_ in VALUE_KINDS] + [
    "malformed syntax",
    "duplicated key",
    "python tag",
    "quoted lr 1e-3",
    "GB18030 file",
    "top level a list",
]


def one_line_error(code: int, err: str, *needles: str) -> str:
    """`assert_user_error`, and nothing else on stderr (a YAML error's context lines included)."""
    assert len(err.strip().splitlines()) == 1, err
    return assert_user_error(code, err, *needles)


def write_grid(folder: Path, base: str, **extra) -> Path:
    grid = {"name": "g", "output": str(folder / "reports" / "g"), "base": base, **extra}
    path = folder / "g.yaml"
    path.write_text(dump(grid), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", KIND_IDS)
def test_a_bad_config_is_one_line_in_train_and_grid_dry_run(guarded, capsys, kind):
    kinds = {k: rest for k, *rest in all_kinds(guarded)}
    data, key, needle = kinds[kind]
    config = guarded / "run.yaml"
    config.write_bytes(data)
    before = snapshot(guarded)

    code, _, err = run_cli(["train", config], capsys)
    one_line_error(code, err, str(config), key, needle)

    grid = write_grid(guarded, "run.yaml", seeds=[0, 1])
    before = snapshot(guarded)
    code, out, err = run_cli(["grid", grid, "--dry-run"], capsys)
    line = one_line_error(code, err, key, needle)
    assert str(grid) in line or str(config) in line, line
    assert snapshot(guarded) == before


@pytest.mark.parametrize(
    "kind, dotted, value, needle", VALUE_KINDS, ids=[k[0] for k in VALUE_KINDS]
)
def test_a_bad_grid_row_names_file_row_and_key(guarded, capsys, kind, dotted, value, needle):
    base = guarded / "run.yaml"
    base.write_text(dump(sample_run_config(guarded)), encoding="utf-8")
    grid = write_grid(guarded, "run.yaml", variants={"baseline": {}, "bad": {dotted: value}})
    before = snapshot(guarded)
    for argv in (["grid", grid, "--dry-run"], ["grid", grid]):
        code, _, err = run_cli(argv, capsys)
        one_line_error(code, err, str(grid), "variant 'bad'", dotted.split(".")[0], needle)
    assert snapshot(guarded) == before


def test_a_duplicated_key_in_a_base_file_names_that_file_and_line(guarded, capsys):
    base = guarded / "base.yaml"
    base.write_text(dump(sample_run_config(guarded)) + "head: {name: pooling}\n", encoding="utf-8")
    config = guarded / "run.yaml"
    config.write_text("base: base.yaml\ntraining: {epochs: 1}\n", encoding="utf-8")
    code, _, err = run_cli(["train", config], capsys)
    line = one_line_error(code, err, str(base), "'head' appears twice")
    assert f"line {len(base.read_text().splitlines())}" in line


def test_a_bad_set_value_is_one_line(guarded, capsys):
    config = guarded / "run.yaml"
    config.write_text(dump(sample_run_config(guarded)), encoding="utf-8")
    code, _, err = run_cli(["train", config, "--set", "training.batch_size=[1"], capsys)
    one_line_error(code, err, "training.batch_size", "not valid YAML")
    code, _, err = run_cli(["train", config, "--set", "training.batch_size=-4"], capsys)
    one_line_error(code, err, "training.batch_size", "got -4")


GRID_TEXT_KINDS = [
    ("malformed", "variants: {a: {}\n", "line"),
    ("duplicated row", "variants:\n  a: {}\n  a: {training.epochs: 2}\n", "'a' appears twice"),
    ("python tag", "seeds: !!python/object/apply:os.system ['echo hi']\n", "is not allowed"),
    ("set tag on a scalar", "variants: !!set 0\n", "line"),
    ("GB18030", None, "not UTF-8 (byte 0x"),
]


@pytest.mark.parametrize("kind, text, needle", GRID_TEXT_KINDS, ids=[k[0] for k in GRID_TEXT_KINDS])
def test_a_bad_grid_file_is_one_line(guarded, capsys, kind, text, needle):
    (guarded / "run.yaml").write_text(dump(sample_run_config(guarded)), encoding="utf-8")
    grid = guarded / "g.yaml"
    head = f"name: g\noutput: {guarded / 'reports' / 'g'}\nbase: run.yaml\n"
    if text is None:
        grid.write_bytes((head + "description: 投诉分类\n").encode("gb18030"))
    else:
        grid.write_text(head + text, encoding="utf-8")
    before = snapshot(guarded)
    for argv in (["grid", grid, "--dry-run"], ["grid", grid]):
        code, _, err = run_cli(argv, capsys)
        one_line_error(code, err, str(grid), needle)
    assert snapshot(guarded) == before


def test_set_into_a_task_that_does_not_exist_is_one_line(guarded, capsys):
    raw = sample_run_config(guarded)
    raw["tasks"] = {"appeals": {"data": raw.pop("data")}}
    config = guarded / "run.yaml"
    config.write_text(dump(raw), encoding="utf-8")
    before = snapshot(guarded)
    code, _, err = run_cli(["train", config, "--set", "tasks.apeals.weight=2"], capsys)
    one_line_error(code, err, "'tasks.apeals.weight'", "no task 'apeals'", "'appeals'")
    assert snapshot(guarded) == before


def test_a_list_of_base_files_merges_in_order(guarded, capsys):
    from xtune.config import load_run_config

    (guarded / "a.yaml").write_text(dump(sample_run_config(guarded)), encoding="utf-8")
    (guarded / "b.yaml").write_text("training: {epochs: 3, batch_size: 4}\n", encoding="utf-8")
    config = guarded / "run.yaml"
    config.write_text("base: [a.yaml, b.yaml]\ntraining: {epochs: 2}\n", encoding="utf-8")
    loaded = load_run_config(config)
    assert (loaded.training.epochs, loaded.training.batch_size) == (2, 4)
    config.write_text("base: {file: a.yaml}\n", encoding="utf-8")
    code, _, err = run_cli(["train", config], capsys)
    one_line_error(code, err, "base: expected a file name or a list of file names")
