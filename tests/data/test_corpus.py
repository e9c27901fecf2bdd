"""Unlabeled documents for masked-LM training: files and columns joined into rows, the held-out
split, and one-line errors naming the file and the config key."""

from __future__ import annotations

import pandas as pd
import pytest

from xtune.config_schema import DataConfig, MaskedLMConfig
from xtune.data.corpus import read_corpus_splits
from xtune.data.readers import DataError

KEY = "tasks.lm.mlm"


def mlm(files=(), columns=(), **keys):
    return MaskedLMConfig(files=list(files), columns=list(columns), **keys)


def write(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_columns_of_every_file_become_documents(tmp_path):
    write(tmp_path / "a.csv", [{"title": "标题", "body": f"正文{i}"} for i in range(9)])
    write(tmp_path / "b.csv", [{"title": "", "body": "另一个"}, {"title": "", "body": ""}])
    config = DataConfig(train="a.csv", root=str(tmp_path), dev_fraction=0.1)
    splits = read_corpus_splits(config, mlm(["b.csv"], ["title", "body"]), KEY)
    documents = splits["train"].documents + splits["dev"].documents
    assert len(documents) == 10 and len(splits["dev"]) == 1  # ceil(0.1 x 9), of a.csv only
    assert "另一个" in splits["train"].documents  # more files only train
    assert "标题\n正文0" in documents and "另一个" in documents  # an empty title left out
    assert splits["train"].sources[str(tmp_path / "b.csv")] == {"documents": 1, "empty_rows": 1}


def test_default_columns_are_text_and_text_pair(tmp_path):
    write(tmp_path / "a.csv", [{"t": "一", "p": "二"}, {"t": "三", "p": "四"}])
    config = DataConfig(train="a.csv", dev="a.csv", root=str(tmp_path), text="t", text_pair="p")
    splits = read_corpus_splits(config, mlm(), KEY)
    assert splits["train"].documents == ["一\n二", "三\n四"] == splits["dev"].documents


def test_missing_column_names_file_column_and_key(tmp_path):
    write(tmp_path / "a.csv", [{"body": "正文"}])
    config = DataConfig(train="a.csv", root=str(tmp_path))
    with pytest.raises(DataError, match=r"a\.csv: column 'title' \(from tasks\.lm\.mlm\.columns\)"):
        read_corpus_splits(config, mlm(columns=["title", "body"]), KEY)
    with pytest.raises(DataError, match=r"a\.csv: column 'text' \(from data\.text\)"):
        read_corpus_splits(config, mlm(), KEY)


def test_missing_file_is_named(tmp_path):
    write(tmp_path / "a.csv", [{"text": "正文"}, {"text": "正文"}])
    config = DataConfig(train="a.csv", root=str(tmp_path))
    with pytest.raises(DataError, match=r"more\.csv: data file not found"):
        read_corpus_splits(config, mlm(["more.csv"]), KEY)


def test_one_document_cannot_be_split(tmp_path):
    write(tmp_path / "a.csv", [{"text": "正文"}])
    with pytest.raises(DataError, match="cannot be split into train and dev"):
        read_corpus_splits(DataConfig(train="a.csv", root=str(tmp_path)), mlm(), KEY)


def test_a_file_of_another_shape_gives_its_own_columns_and_format(tmp_path):
    write(tmp_path / "a.csv", [{"text": f"正文{i}"} for i in range(4)])
    (tmp_path / "pairs.txt").write_text("问一\t问二\t1\n问三\t\t0\n", encoding="utf-8")
    (tmp_path / "docs.json").write_text(
        '[{"sentence": "句一", "labels": []}, {"sentence": "句二", "labels": ["A"]}]\n',
        encoding="utf-8",
    )
    files = [
        {"path": "pairs.txt", "format": "tsv", "header": ["a", "b", "y"], "columns": ["a", "b"]},
        {"path": "docs.json", "columns": ["sentence"]},
    ]
    splits = read_corpus_splits(DataConfig(train="a.csv", root=str(tmp_path)), mlm(files), KEY)
    assert splits["train"].documents[-4:] == ["问一\n问二", "问三", "句一", "句二"]
    with pytest.raises(DataError, match=r"tasks\.lm\.mlm\.files\[0\]: unknown key 'colums'"):
        bad = mlm([{"path": "pairs.txt", "colums": ["s1"]}])
        read_corpus_splits(DataConfig(train="a.csv", root=str(tmp_path)), bad, KEY)


def test_labels_split_holds_out_exactly_the_classification_dev_rows(tmp_path):
    from xtune.data.examples import load_splits

    rows = [{"text": f"文本{i}", "labels": "甲乙丙"[i % 3]} for i in range(30)]
    rows.insert(5, {"text": "", "labels": "甲"})  # no text: skipped by both
    write(tmp_path / "a.csv", rows)
    config = DataConfig(
        train="a.csv", root=str(tmp_path), dev_fraction=0.2, split_seed=3, bad_rows="skip"
    )
    labelled, _ = load_splits(config)
    splits = read_corpus_splits(config, mlm(dev_split="labels"), KEY)
    assert splits["dev"].documents == labelled["dev"].texts
    assert splits["train"].documents == labelled["train"].texts
    counts = splits["train"].sources[str(tmp_path / "a.csv")]
    assert counts == {"documents": 24, "empty_rows": 1, "held_out": 6}  # ceil(0.2 x 30)
    by_documents = read_corpus_splits(config, mlm(), KEY)
    assert by_documents["dev"].documents != labelled["dev"].texts  # the plain split differs
