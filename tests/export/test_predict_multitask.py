"""`xtune predict --task`: one task of a multi-task run folder or of its export (the one
`export_run`) labels a table; the run folder, the export and `predict_texts` agree; a wrong
or missing `--task` is one error line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.reliability.helpers import assert_user_error, run_cli

TEXTS = ["love super the new", "not force and you", "", "what can club"]
PAIRS = ["super love", "hello world plus", "club", "club can what"]
GOOD = [0, 1, 3]
TASK_NAMES = "sentiment, paraphrase, sts"


# The session's three-task run and its export (tests/conftest.py).


@pytest.fixture(scope="module")
def multitask_run(three_task_run):
    return three_task_run


@pytest.fixture(scope="module")
def multitask_export(three_task_export):
    return three_task_export


@pytest.fixture(scope="module")
def loaded_run(multitask_run):
    from xtune.tasks.run_folder import load_run

    return load_run(multitask_run)


@pytest.fixture
def table(tmp_path):
    """Four rows; row 3 has an empty text (a bad row)."""
    path = tmp_path / "input.csv"
    pd.DataFrame({"id": [1, 2, 3, 4], "text": TEXTS, "text_pair": PAIRS}).to_csv(path, index=False)
    return path


def predict_both(multitask_run, multitask_export, table, tmp_path, capsys, task):
    """The task's output table from the run folder and from the export, through the CLI."""
    tables = {}
    for source, model_dir in (("run", multitask_run), ("export", multitask_export)):
        output = tmp_path / f"{task}-{source}.csv"
        argv = ["predict", model_dir, "--task", task, "--input", table, "--output", output]
        code, _, err = run_cli(argv, capsys)
        assert code == 0, err
        assert "row 3: empty text" in err
        tables[source] = pd.read_csv(output, keep_default_na=False)
    return tables


def test_a_classification_task_from_the_run_folder_and_the_export(
    multitask_run, multitask_export, loaded_run, table, tmp_path, capsys
):
    from xtune.tasks.run_folder import predict_texts

    tables = predict_both(multitask_run, multitask_export, table, tmp_path, capsys, "sentiment")
    task = next(task for task in loaded_run.tasks if task.name == "sentiment")
    scores = np.asarray(
        task.loss.scores(predict_texts(loaded_run, "sentiment", [TEXTS[i] for i in GOOD]))
    )
    decided = np.asarray(task.loss.decide(scores, None))
    probabilities = [f"prob_{label}" for label in task.labels]
    for result in tables.values():
        assert list(result.columns) == [
            "id", "text", "text_pair", "predicted_labels", "top_labels", "top_probabilities",
            *probabilities, "error",
        ]  # fmt: skip
        assert result["error"].tolist() == ["", "", "empty text", ""]
        assert result.loc[2, probabilities].eq("").all()
        written = result.loc[GOOD, probabilities].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(written, scores, atol=1e-5)
        assert result.loc[GOOD, "predicted_labels"].tolist() == [
            task.labels[int(np.argmax(row))] for row in decided
        ]
    np.testing.assert_allclose(
        tables["run"].loc[GOOD, probabilities].to_numpy(dtype=np.float64),
        tables["export"].loc[GOOD, probabilities].to_numpy(dtype=np.float64),
        atol=1e-5,
    )
    assert tables["run"]["top_labels"].tolist() == tables["export"]["top_labels"].tolist()


def test_a_score_task_from_the_run_folder_and_the_export(
    multitask_run, multitask_export, loaded_run, table, tmp_path, capsys
):
    from xtune.tasks.run_folder import predict_texts

    tables = predict_both(multitask_run, multitask_export, table, tmp_path, capsys, "sts")
    task = next(task for task in loaded_run.tasks if task.name == "sts")
    texts, pairs = [TEXTS[i] for i in GOOD], [PAIRS[i] for i in GOOD]
    want = np.asarray(task.loss.scores(predict_texts(loaded_run, "sts", texts, pairs)))
    for result in tables.values():
        assert list(result.columns) == ["id", "text", "text_pair", "score", "error"]
        assert result.loc[2, "score"] == ""
        written = result.loc[GOOD, "score"].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(written, want, atol=1e-5)
        assert np.all((written >= 0.0) & (written <= 5.0))  # the task's label units
    np.testing.assert_allclose(
        tables["run"].loc[GOOD, "score"].to_numpy(dtype=np.float64),
        tables["export"].loc[GOOD, "score"].to_numpy(dtype=np.float64),
        atol=1e-5,
    )


def test_a_multitask_model_needs_a_known_task(
    multitask_run, multitask_export, table, tmp_path, capsys
):
    output = tmp_path / "out.csv"
    for model_dir in (multitask_run, multitask_export):
        argv = ["predict", model_dir, "--input", table, "--output", output]
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, "multi-task model", "--task", TASK_NAMES)
        code, _, err = run_cli([*argv, "--task", "topic"], capsys)
        assert_user_error(code, err, "no task 'topic'", TASK_NAMES)
    assert not output.exists()


def test_a_single_task_model_has_one_task_named_default(pair_run, table, tmp_path, capsys):
    """A config without `tasks:` is one task, `default`: `--task` may name it, nothing else."""
    output = tmp_path / "out.csv"
    argv = ["predict", pair_run, "--task", "sentiment", "--input", table, "--output", output]
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, "no task 'sentiment'", "--task is one of: default")
    assert not output.exists()


def test_a_missing_input_column_names_the_task_columns(
    multitask_run, multitask_export, tmp_path, capsys
):
    path = tmp_path / "input.csv"
    pd.DataFrame({"text": ["love super"], "other": ["x"]}).to_csv(path, index=False)
    output = tmp_path / "out.csv"
    for model_dir in (multitask_run, multitask_export):
        argv = ["predict", model_dir, "--task", "sts", "--input", path, "--output", output]
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, "column 'text_pair'", "has columns: text, other")
    assert not output.exists()


def test_the_export_records_each_task_columns(multitask_export, table, tmp_path, capsys):
    """The metadata names each task's input columns, and predict reads them from there even
    when the run folder the export came from is gone (a deployed copy)."""
    import json
    import shutil

    from xtune.export.saved_model import EXPORT_FILE

    metadata = json.loads((multitask_export / EXPORT_FILE).read_text())
    assert metadata["tasks"]["sts"]["columns"] == {"text": "text", "text_pair": "text_pair"}
    assert metadata["tasks"]["sentiment"]["columns"] == {"text": "text", "text_pair": None}
    deployed = tmp_path / "deployed"
    shutil.copytree(multitask_export, deployed)
    metadata["run_dir"] = str(tmp_path / "deleted-run")
    metadata["tasks"]["sts"]["columns"] = {"text": "question", "text_pair": "answer"}
    (deployed / EXPORT_FILE).write_text(json.dumps(metadata))
    renamed = tmp_path / "renamed.csv"
    pd.read_csv(table).rename(columns={"text": "question", "text_pair": "answer"}).to_csv(
        renamed, index=False
    )
    output = tmp_path / "out.csv"
    argv = ["predict", deployed, "--task", "sts", "--input", renamed, "--output", output]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    result = pd.read_csv(output, keep_default_na=False)
    assert list(result.columns) == ["id", "question", "answer", "score", "error"]
    assert result["error"].tolist() == ["", "", "empty text", ""]
