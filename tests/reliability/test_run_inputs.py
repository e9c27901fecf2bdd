"""Bad inputs and faults around run folders, export and predict: one clear line, exit 2, and
nothing previously written changes; served (export, predict) == trained (metrics.json)."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.export.conftest import LABELS, random_rows, tiny_config
from tests.reliability.helpers import assert_user_error, run_cli, snapshot
from tests.task_view import served_thresholds


@dataclass
class Trained:
    root: Path
    config: Path  # the run config YAML (mixed_bfloat16)
    run: Path  # a finished run folder
    export: Path  # its export
    dev: Path  # the dev CSV


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """One tiny mixed_bfloat16 run, trained and exported through the command line."""
    from xtune.cli import main

    root = tmp_path_factory.mktemp("run_inputs")
    rows = random_rows(100, seed=3)
    pd.DataFrame(rows[:60]).to_csv(root / "train.csv", index=False)
    pd.DataFrame(rows[60:]).to_csv(root / "dev.csv", index=False)
    raw = tiny_config(root)
    raw["training"]["mixed_precision"] = "mixed_bfloat16"
    raw["optimizer"] = {"name": "adamw", "learning_rate": 1e-3}
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    run, export = root / "runs" / "good", root / "export"
    assert main(["train", str(config), "--run-dir", str(run)]) == 0
    assert main(["export", str(run), str(export)]) == 0
    return Trained(root, config, run, export, root / "dev.csv")


def copy_run(trained: Trained, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    change(run)
    return run


def flip_a_byte(run: Path) -> None:
    weights = run / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # a weight value changes: loading alone would not notice
    weights.write_bytes(bytes(data))


def truncate(run: Path) -> None:
    weights = run / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def forget_hashes(run: Path) -> None:
    """A run folder written before xtune recorded the weights' sha256."""
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["weights_sha256"]
    (run / "metrics.json").write_text(json.dumps(metrics))


def garble_metrics(run: Path) -> None:
    (run / "metrics.json").write_bytes(b'{"best_epoch": 1, "be')


def unfinished(run: Path) -> None:
    (run / "metrics.json").unlink()


def write_input(tmp_path: Path, texts: list[str], text_column: str = "body") -> Path:
    path = tmp_path / "input.csv"
    pd.DataFrame({text_column: texts, "title": ["标题"] * len(texts)}).to_csv(path, index=False)
    return path


def not_an_export(tmp_path: Path, export_json: bool = False) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    if export_json:  # a file of that name alone does not make an xtune export
        (folder / "export.json").write_text("{}")
    return folder


# Each case: (name, argv from (trained, tmp_path), the needles of the one error line).
# Every case also proves that the good run folder, the export and tmp_path's other files are
# byte-identical afterwards.
CASES = [
    (
        "export an unfinished run",
        lambda t, tmp: ["export", copy_run(t, tmp, unfinished), tmp / "out"],
        ["not a finished xtune run folder", "metrics.json"],
    ),
    (
        "predict with an unfinished run",
        lambda t, tmp: [
            "predict",
            copy_run(t, tmp, unfinished),
            "--input",
            t.dev,
            "--output",
            tmp / "out.csv",
        ],
        ["not a finished xtune run folder"],
    ),
    (
        "export onto a non-empty folder without --force",
        lambda t, tmp: ["export", t.run, t.export],
        ["already exists", "--force"],
    ),
    (
        "export --force onto a folder that is not an export",
        lambda t, tmp: ["export", t.run, not_an_export(tmp), "--force"],
        ["--force only replaces an earlier xtune export", "export.json"],
    ),
    (
        "export --force onto a folder holding a stray export.json",
        lambda t, tmp: ["export", t.run, not_an_export(tmp, export_json=True), "--force"],
        ["--force only replaces an earlier xtune export"],
    ),
    (
        "export into the run folder",
        lambda t, tmp: ["export", t.run, t.run / "export"],
        ["must not be, contain or lie inside the run folder"],
    ),
    (
        "predict a table without the text column",
        lambda t, tmp: [
            "predict",
            t.export,
            "--input",
            write_input(tmp, ["你好"], text_column="text"),
            "--output",
            tmp / "out.csv",
        ],
        ["column 'body'", "has columns: text, title"],
    ),
    (
        "export flipped bytes in the weights",
        lambda t, tmp: ["export", copy_run(t, tmp, flip_a_byte), tmp / "out"],
        ["model.weights.h5", "weights were modified after training", "!= recorded"],
    ),
    (
        "predict with flipped bytes in the weights",
        lambda t, tmp: [
            "predict",
            copy_run(t, tmp, flip_a_byte),
            "--input",
            t.dev,
            "--output",
            tmp / "out.csv",
        ],
        ["weights were modified after training"],
    ),
    (
        "export a truncated weights file",
        lambda t, tmp: ["export", copy_run(t, tmp, truncate), tmp / "out"],
        ["model.weights.h5", "weights were modified after training"],
    ),
    (
        "export a truncated weights file of a run without recorded hashes",
        lambda t, tmp: [
            "export",
            copy_run(t, tmp, lambda run: (truncate(run), forget_hashes(run))),
            tmp / "out",
        ],
        ["model.weights.h5: cannot load the weights", "truncated or damaged"],
    ),
    (
        "export a run whose metrics.json is damaged",
        lambda t, tmp: ["export", copy_run(t, tmp, garble_metrics), tmp / "out"],
        ["metrics.json: damaged, not JSON"],
    ),
    (
        "predict --output equal to --input",
        lambda t, tmp: ["predict", t.export, "--input", t.dev, "--output", t.dev],
        ["--output is the input file", "never overwrites its input"],
    ),
    (
        "predict --output naming the input through another path",
        lambda t, tmp: [
            "predict",
            t.run,
            "--input",
            t.dev,
            "--output",
            t.root / "runs" / ".." / "dev.csv",
        ],
        ["--output is the input file"],
    ),
    (
        "predict --output into the run folder",
        lambda t, tmp: ["predict", t.run, "--input", t.dev, "--output", t.run / "metrics.json"],
        ["--output lies inside the model folder"],
    ),
]


@pytest.mark.parametrize("build, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error_and_changes_nothing(
    trained, tmp_path, capsys, build, needles
):
    argv = build(trained, tmp_path)
    before = snapshot(trained.root), snapshot(tmp_path)
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, *needles)
    assert (snapshot(trained.root), snapshot(tmp_path)) == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    "learning_rate, needle", [("1000.0", "exceeds"), ("1.0e+30", "is non-finite")]
)
def test_a_diverging_run_stops_with_its_epoch_and_learning_rate(
    trained, tmp_path, capsys, learning_rate, needle
):
    run = tmp_path / "run"
    argv = ["train", trained.config, "--run-dir", run]
    argv += ["--set", f"optimizer.learning_rate={learning_rate}"]
    argv += ["--set", "training.steps_per_epoch=3", "--set", "training.epochs=2"]
    before = snapshot(trained.root)
    code, _, err = run_cli(argv, capsys)
    assert_user_error(
        code, err, "training diverged in epoch 1", needle, f"learning_rate {float(learning_rate)}"
    )
    assert not (run / "metrics.json").exists()  # an unfinished folder, recorded nowhere
    assert snapshot(trained.root) == before


def test_a_full_disk_while_writing_weights_is_one_error_and_leaves_no_temporary_file(
    trained, tmp_path, capsys, monkeypatch
):
    import xtune.run_folder

    def disk_full(model, path):
        Path(path).write_bytes(b"\x89HDF partial")  # a partial file, as a real full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xtune.run_folder, "save_model_weights", disk_full)
    before = snapshot(trained.root)
    argv = ["train", trained.config, "--run-dir", tmp_path / "run"]
    code, _, err = run_cli(argv + ["--set", "training.steps_per_epoch=1"], capsys)
    assert_user_error(code, err, "model.weights.h5: cannot write: No space left on device")
    assert snapshot(trained.root) == before
    left = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert "metrics.json" not in left and "model.weights.h5" not in left
    assert not [name for name in left if name.startswith(".")], left


def test_a_full_disk_while_writing_a_file_keeps_its_old_content(tmp_path):
    from xtune.run_folder import RunFolderError, write_atomic, write_through_temporary

    path = tmp_path / "metrics.json"
    write_atomic(path, "old")

    def partial_then_full(temporary: Path) -> None:
        temporary.write_text("ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RunFolderError, match="metrics.json: cannot write: No space left"):
        write_through_temporary(path, partial_then_full)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert path.read_text() == "old"


def test_a_full_disk_while_writing_predictions_leaves_no_temporary_file(tmp_path, monkeypatch):
    from xtune.export.prediction_table import write_table
    from xtune.run_folder import RunFolderError

    output = tmp_path / "out.csv"
    output.write_text("earlier predictions")

    def disk_full(self, path, **kwargs):
        Path(path).write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(RunFolderError, match="out.csv: cannot write: No space left on device"):
        write_table(pd.DataFrame({"a": [1]}), output, "csv")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert output.read_text() == "earlier predictions"


def test_empty_and_10k_character_texts_are_predicted_or_marked(trained, tmp_path, capsys):
    texts = ["", "我们" * 5000, "北京的空气"]
    for source in (trained.run, trained.export):
        output = tmp_path / f"{source.name}.jsonl"
        code, _, err = run_cli(
            ["predict", source, "--input", write_input(tmp_path, texts), "--output", output],
            capsys,
        )
        assert code == 0, err
        table = pd.read_json(output, lines=True)
        assert table["error"].tolist() == ["empty text", "", ""]
        assert table["top_labels"].iloc[1:].map(lambda v: v.split("|")[0] in LABELS).all()
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_old_run_folder_without_hashes_loads_with_a_warning(trained, tmp_path, caplog):
    from tests.task_view import load_task_view as load_run

    run = copy_run(trained, tmp_path, forget_hashes)
    assert load_run(run).labels == json.loads((trained.run / "labels.json").read_text())["labels"]
    assert "records no weights sha256" in caplog.text


def test_predict_on_dev_reproduces_the_run_metrics_exactly(trained, tmp_path, capsys):
    """A mixed_bfloat16 run's metrics.json and thresholds are the float32 served model's."""
    from tests.task_view import load_task_view as load_run
    from xtune.config import parse_run_config
    from xtune.data.examples import load_splits
    from xtune.data.pipeline import tokenize_examples
    from xtune.metrics import multilabel_metrics
    from xtune.thresholds import choose_decision_rule
    from xtune.training.evaluation import predict_logits

    metrics = json.loads((trained.run / "metrics.json").read_text())
    thresholds = served_thresholds(trained.run)

    # The thresholds are those tuned on the reloaded float32 model's dev scores.
    run = load_run(trained.run)
    config = parse_run_config(yaml.safe_load((trained.run / "config.yaml").read_text()))
    splits, vocab = load_splits(config.data)
    dev = tokenize_examples(splits["dev"], run.text_encoder, vocab.encode(splits["dev"].label_sets))
    scores = np.asarray(run.loss.scores(predict_logits(run.model, dev, 64, config.data.max_length)))
    training = config.training
    tuned = choose_decision_rule(
        dev.labels, scores, training.metric, "tuned", training.tune_thresholds, seed=training.seed
    ).thresholds
    assert tuned.tolist() == np.float32(thresholds).tolist()

    for source in (trained.run, trained.export):
        output = tmp_path / f"{source.name}.csv"
        code, _, err = run_cli(
            ["predict", source, "--input", trained.dev, "--output", output], capsys
        )
        assert code == 0, err
        table = pd.read_csv(output, keep_default_na=False)
        predicted = vocab.encode([set(filter(None, v.split("|"))) for v in table.predicted_labels])
        served = multilabel_metrics(dev.labels, predicted, scores)
        for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
            assert served[key] == metrics["tuned"][key], (source.name, key)
    assert metrics["precision"] == "mixed_bfloat16" and metrics["eval_precision"] == "float32"
