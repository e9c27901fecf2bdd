"""`predict_file` labels a table from a run folder or an export, and survives bad rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

GOOD_TEXT = "北京的空气很好，我们是全国第一"


@pytest.fixture
def table_with_bad_rows(tmp_path):
    """Rows 2 (empty body) and 3 (bytes that are not UTF-8) are bad; 1 and 4 are fine."""
    path = tmp_path / "input.csv"
    path.write_bytes(
        f"id,body,title\n1,{GOOD_TEXT},标题\n2,,空的\n".encode()
        + b"3,\xff\xfe\xe5\x9d,x\n"
        + f"4,{'这里问题是什么' * 10},问\n".encode()
    )
    return path


def test_predict_file_writes_predictions_and_reports_bad_rows(
    load_trained_run, pair_run, pair_export, table_with_bad_rows, tmp_path, capsys
):
    """From the run folder and from its export: the same table, bad rows marked, not fatal."""
    from xtune.export.predict import predict_file

    run = load_trained_run(pair_run)
    probability_columns = [f"prob_{label}" for label in run.labels]
    texts = tf.constant([GOOD_TEXT, "这里问题是什么" * 10])
    encoded = run.text_encoder.pad(run.text_encoder(texts, tf.constant(["标题", "问"])))
    scores = np.asarray(run.loss.scores(run.model.predict_on_batch(encoded)))
    decided = np.asarray(run.loss.decide(scores, run.thresholds))

    tables = {}
    for source, model_dir in (("run", pair_run), ("export", pair_export)):
        output = tmp_path / f"{source}.csv"
        summary = predict_file(model_dir, table_with_bad_rows, output, batch_size=2, top_k=2)
        assert [message.split(": ", 1)[1] for message in summary.bad_rows] == [
            "row 2: empty text",
            "row 3: text has bytes that are not valid UTF-8",
        ]
        assert "row 2: empty text" in capsys.readouterr().err
        tables[source] = table = pd.read_csv(output, keep_default_na=False)
        assert list(table.columns) == [
            "id",
            "body",
            "title",
            "predicted_labels",
            "top_labels",
            "top_probabilities",
            *probability_columns,
            "error",
        ]
        assert table["id"].tolist() == [1, 2, 3, 4]
        assert table["error"].tolist() == [
            "",
            "empty text",
            "text has bytes that are not valid UTF-8",
            "",
        ]
        assert table.loc[[1, 2], "predicted_labels"].tolist() == ["", ""]
        assert table.loc[[1, 2], probability_columns].eq("").all().all()

        # The good rows carry the in-framework probabilities and the run's decision.
        written = table.loc[[0, 3], probability_columns].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(written, scores, atol=2e-6)
        for row, (position, chosen) in enumerate(zip([0, 3], decided, strict=True)):
            names = table.loc[position, "predicted_labels"]
            assert set(filter(None, names.split("|"))) == {
                run.labels[i] for i in np.flatnonzero(chosen)
            }
            top = table.loc[position, "top_labels"].split("|")
            assert top == [run.labels[i] for i in np.argsort(-scores[row], kind="stable")[:2]]
            assert len(table.loc[position, "top_probabilities"].split("|")) == 2
    pd.testing.assert_frame_equal(
        tables["run"].drop(columns=probability_columns + ["top_probabilities"]),
        tables["export"].drop(columns=probability_columns + ["top_probabilities"]),
    )


def test_predict_file_names_a_missing_text_column(pair_export, tmp_path):
    from xtune.data.readers import DataError
    from xtune.export.predict import predict_file

    path = tmp_path / "input.csv"
    pd.DataFrame({"text": ["你好"], "title": ["问"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="column 'body'.*has columns: text, title"):
        predict_file(pair_export, path, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_the_one_task_may_be_named_default(pair_run, pair_export, table_with_bad_rows, tmp_path):
    """A config without `tasks:` is one task, `default`: naming it changes nothing."""
    from xtune.export.predict import predict_file

    for model_dir in (pair_run, pair_export):
        outputs = [tmp_path / "plain.csv", tmp_path / "named.csv"]
        predict_file(model_dir, table_with_bad_rows, outputs[0], verbose=0)
        predict_file(model_dir, table_with_bad_rows, outputs[1], verbose=0, task="default")
        pd.testing.assert_frame_equal(pd.read_csv(outputs[0]), pd.read_csv(outputs[1]))


def test_a_run_trained_on_header_less_files_predicts_them(pair_run, tmp_path):
    """`data.columns` names a header-less file's columns; predict reads such input so too
    (a file with a header still reads by it)."""
    import shutil

    import yaml

    from xtune.export.predict import predict_file

    folder = shutil.copytree(pair_run, tmp_path / "run")
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    config["data"]["columns"] = ["body", "title", "labels"]
    (folder / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    headerless = tmp_path / "input.csv"
    headerless.write_text(f"{GOOD_TEXT},标题,交通\n这里问题是什么,问,环境\n", encoding="utf-8")
    with_header = tmp_path / "with_header.csv"
    with_header.write_text(f"body,title\n{GOOD_TEXT},标题\n这里问题是什么,问\n", encoding="utf-8")
    tables = []
    for source in (headerless, with_header):
        predict_file(folder, source, tmp_path / f"out-{source.name}", verbose=0)
        tables.append(pd.read_csv(tmp_path / f"out-{source.name}", keep_default_na=False))
    assert tables[0]["body"].tolist() == [GOOD_TEXT, "这里问题是什么"]
    assert tables[0]["error"].tolist() == ["", ""]
    assert tables[0]["predicted_labels"].tolist() == tables[1]["predicted_labels"].tolist()


def test_a_texts_own_replacement_character_is_predicted_like_any_text(
    load_trained_run, pair_run, tmp_path
):
    """U+FFFD written in a UTF-8 file is text (scraped text holds it); only bytes that fail to
    decode make a bad row, and the output shows each of those bytes as U+FFFD."""
    from xtune.export.predict import predict_file

    path = tmp_path / "input.csv"
    path.write_bytes(f"id,body,title\n1,{GOOD_TEXT}\ufffd,标题\n".encode() + b"2,\xe5\x9d\xff,x\n")
    summary = predict_file(pair_run, path, tmp_path / "out.csv", batch_size=2, top_k=1)
    assert [message.split(": ", 1)[1] for message in summary.bad_rows] == [
        "row 2: text has bytes that are not valid UTF-8"
    ]
    table = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert table["error"].tolist() == ["", "text has bytes that are not valid UTF-8"]
    assert table["body"].tolist() == [f"{GOOD_TEXT}\ufffd", "\ufffd\ufffd\ufffd"]
    run = load_trained_run(pair_run)
    encoded = run.text_encoder.pad(
        run.text_encoder(tf.constant([f"{GOOD_TEXT}\ufffd"]), tf.constant(["标题"]))
    )
    scores = np.asarray(run.loss.scores(run.model.predict_on_batch(encoded)))
    written = table.loc[[0], [f"prob_{label}" for label in run.labels]].to_numpy(np.float64)
    np.testing.assert_allclose(written, scores, atol=2e-6)
