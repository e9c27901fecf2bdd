"""Readers, label formats, bad-row reporting and seeded splits."""

import json

import numpy as np
import pandas as pd
import pytest

from xtune.config import DataConfig
from xtune.data.examples import load_splits, read_examples
from xtune.data.labels import LabelVocab
from xtune.data.readers import DataError

ROWS = [
    {"id": 1, "title": "北河区", "body": "噪音扰民 很久了", "labels": "噪音|环境"},
    {"id": 2, "title": "文星路", "body": "道路破损", "labels": "交通"},
    {"id": 3, "title": "光明街", "body": "小区停水", "labels": "住房|环境"},
]


def config(**kwargs) -> DataConfig:
    base = {"text": "body", "text_pair": "title", "labels": "labels", "cache_dir": None}
    return DataConfig(**{**base, **kwargs})


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "xlsx"])
def test_every_format_reads_the_same_examples(tmp_path, suffix):
    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"data.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_excel(path, index=False)
    examples = read_examples(config(train=str(path)), str(path))
    assert examples.texts == ["噪音扰民 很久了", "道路破损", "小区停水"]
    assert examples.pairs == ["北河区", "文星路", "光明街"]
    assert examples.label_sets == [["噪音", "环境"], ["交通"], ["住房", "环境"]]
    assert examples.rows == [1, 2, 3]


def test_list_column_and_one_hot_columns(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"text": t, "tags": tags}, ensure_ascii=False)
            for t, tags in [("a", ["x", "y"]), ("b", []), ("c", ["y"])]
        ),
        encoding="utf-8",
    )
    listed = read_examples(
        config(text="text", text_pair=None, labels="tags", label_format="list"), str(path)
    )
    assert listed.label_sets == [["x", "y"], [], ["y"]]

    wide = tmp_path / "wide.csv"
    pd.DataFrame({"text": ["a", "b"], "x": [1, 0], "y": [1, 1]}).to_csv(wide, index=False)
    columns = read_examples(
        config(text="text", text_pair=None, label_format="columns", label_columns=["x", "y"]),
        str(wide),
    )
    assert columns.label_sets == [["x", "y"], ["y"]]


def test_header_less_tsv_with_label_indices(tmp_path):
    (tmp_path / "names.txt").write_text("joy\nanger\nneutral\n", encoding="utf-8")
    (tmp_path / "train.tsv").write_text("so happy\t0\tid1\nugh, fine\t1,2\tid2\n", encoding="utf-8")
    cfg = config(
        root=str(tmp_path),
        train="train.tsv",
        columns=["text", "labels", "id"],
        text="text",
        text_pair=None,
        label_separator=",",
        labels_are_indices=True,
        label_names="names.txt",
        dev_fraction=0.5,
    )
    examples = read_examples(cfg, "train.tsv")
    assert examples.label_sets == [["joy"], ["anger", "neutral"]]


def test_bad_rows_error_names_file_and_row(write_csv):
    path = write_csv("bad.csv", ROWS + [{"id": 4, "title": "x", "body": "  ", "labels": "交通"}])
    with pytest.raises(DataError) as error:
        read_examples(config(), str(path))
    assert str(path) in str(error.value) and "row 4" in str(error.value)
    assert "empty text" in str(error.value)


def test_bad_rows_skip_counts_them(write_csv):
    rows = ROWS + [
        {"id": 4, "title": "x", "body": "", "labels": "交通"},
        {"id": 5, "title": "y", "body": "ok", "labels": "未知"},
    ]
    train = write_csv("train.csv", ROWS)
    dev = write_csv("dev.csv", rows)
    splits, vocab = load_splits(config(train=str(train), dev=str(dev), bad_rows="skip"))
    assert len(splits["dev"]) == 3
    assert len(splits["dev"].skipped) == 2
    assert "row 4" in splits["dev"].skipped[0] and "row 5" in splits["dev"].skipped[1]
    assert "not in the label vocabulary" in splits["dev"].skipped[1]
    unknown_only = write_csv("dev2.csv", ROWS + [rows[-1]])
    with pytest.raises(DataError, match="row 4: label.*'未知' not in the label vocabulary"):
        load_splits(config(train=str(train), dev=str(unknown_only), bad_rows="error"))


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"body,labels\nok,a\n" + b"caf\xe9,a\nfine,b\n")
    with pytest.raises(DataError, match=r"line 3.*not valid UTF-8"):
        read_examples(config(text_pair=None), str(path))
    examples = read_examples(config(text_pair=None, bad_rows="skip"), str(path))
    assert examples.texts == ["ok", "fine"] and "row 2" in examples.skipped[0]
    path.write_bytes(b"body,labels\nok,a\nfine,caf\xe9\n")
    examples = read_examples(config(text_pair=None, bad_rows="skip"), str(path))
    assert (
        examples.label_sets == [["a"]] and "row 2: labels (column 'labels')" in examples.skipped[0]
    )


def test_missing_file_and_column(tmp_path, write_csv):
    with pytest.raises(DataError, match="nope.csv: data file not found"):
        read_examples(config(), str(tmp_path / "nope.csv"))
    path = write_csv("t.csv", [{"body": "x", "labels": "a"}])
    with pytest.raises(DataError, match=r"column 'title' \(from data.text_pair\) not found"):
        read_examples(config(), str(path))


def test_seeded_split_is_deterministic_stratified_and_disjoint(write_csv):
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c", "d"]
    rows = [
        {"body": f"text {i}", "labels": "|".join(rng.choice(labels, rng.integers(1, 3), False))}
        for i in range(200)
    ]
    path = write_csv("all.csv", rows)
    cfg = config(train=str(path), text_pair=None, dev_fraction=0.25, split_seed=3)
    first, vocab = load_splits(cfg)
    second, _ = load_splits(cfg)
    assert first["dev"].rows == second["dev"].rows
    assert not set(first["dev"].rows) & set(first["train"].rows)
    assert len(first["dev"]) + len(first["train"]) == 200
    assert abs(len(first["dev"]) - 50) <= 2
    full = vocab.encode([r["labels"].split("|") for r in rows]).mean(0)
    dev = vocab.encode(first["dev"].label_sets).mean(0)
    assert np.abs(full - dev).max() < 0.05  # label frequencies preserved


def test_label_vocab_round_trip(tmp_path):
    vocab = LabelVocab.from_label_sets([["b", "a"], ["b"], ["c"]])
    assert vocab.names == ["b", "a", "c"]  # by frequency, then name
    vocab.save(tmp_path / "labels.json")
    assert LabelVocab.load(tmp_path / "labels.json") == vocab
    assert vocab.decode(vocab.encode([["c", "b"]])) == [["b", "c"]]


def test_max_train_rows_takes_a_seeded_stratified_subset(write_csv):
    rng = np.random.default_rng(1)
    labels = ["a", "b", "c", "d", "rare"]
    rows = [
        {
            "body": f"text {i}",
            "labels": "rare" if i % 40 == 0 else "|".join(rng.choice(labels[:4], 2, False)),
        }
        for i in range(400)
    ]
    train = write_csv("train.csv", rows)
    dev = write_csv("dev.csv", rows[:10])
    cfg = config(train=str(train), dev=str(dev), text_pair=None, max_train_rows=100)
    first, vocab = load_splits(cfg)
    again, _ = load_splits(cfg)
    other, _ = load_splits(config(**{**cfg.__dict__, "split_seed": 5}))
    kept = first["train"]
    assert len(kept) == 100 and kept.rows == again["train"].rows
    assert kept.rows == sorted(set(kept.rows)) and kept.rows != other["train"].rows
    assert "(100 of 400 rows)" in kept.source
    assert len(first["dev"]) == 10  # only train is cut
    full = vocab.encode([r["labels"].split("|") for r in rows]).mean(0)
    part = vocab.encode(kept.label_sets).mean(0)
    assert np.abs(full - part).max() < 0.07
    assert sum("rare" in labels for labels in kept.label_sets) in (2, 3)  # 10 of 400 -> 2.5
    index = {text: i for i, text in enumerate(r["body"] for r in rows)}
    assert all(
        rows[index[t]]["labels"].split("|") == s
        for t, s in zip(kept.texts, kept.label_sets, strict=True)
    )

    whole, _ = load_splits(config(**{**cfg.__dict__, "max_train_rows": 1000}))
    assert len(whole["train"]) == 400
    with pytest.raises(DataError, match="data.max_train_rows must be a positive integer, got 0"):
        load_splits(config(**{**cfg.__dict__, "max_train_rows": 0}))


def test_empty_and_nan_label_cells_are_no_labels(write_csv):
    rows = [
        {"body": "a", "labels": "x"},
        {"body": "b", "labels": ""},
        {"body": "c", "labels": "NaN"},
        {"body": "d", "labels": "nan|x"},
        {"body": "e", "labels": "y"},
    ]
    examples = read_examples(config(text_pair=None), str(write_csv("t.csv", rows)))
    assert examples.label_sets == [["x"], [], [], ["x"], ["y"]]
    splits, vocab = load_splits(
        config(train=str(write_csv("train.csv", rows)), text_pair=None, dev_fraction=0.4)
    )
    assert vocab.names == ["x", "y"]  # "NaN" is not a class


def test_every_label_cell_empty_is_an_error(write_csv):
    path = write_csv("t.csv", [{"body": "a", "labels": ""}, {"body": "b", "labels": "nan"}])
    with pytest.raises(DataError, match="t.csv: no row has a label"):
        load_splits(config(train=str(path), text_pair=None))


def test_json_objects_or_lists_where_text_is_expected(tmp_path):
    path = tmp_path / "d.jsonl"
    records = [
        {"text": "ok", "meta": {"title": "t"}, "labels": ["x"]},
        {"text": {"zh": "嵌套"}, "meta": {"title": "t"}, "labels": ["x"]},
        {"text": ["a", "b"], "meta": {"title": "t"}, "labels": ["x"]},
        {"text": "fine", "meta": {"title": "u"}, "labels": {"x": 1}},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), "utf-8")
    cfg = config(text="text", text_pair=None, label_format="list")
    with pytest.raises(DataError) as error:
        read_examples(cfg, str(path))
    assert "d.jsonl: row 2: text (column 'text') holds an object where text is expected" in str(
        error.value
    )
    assert "{'zh'" not in str(error.value)  # no repr of the value
    skipped = read_examples(config(**{**cfg.__dict__, "bad_rows": "skip"}), str(path))
    assert skipped.texts == ["ok"] and len(skipped.skipped) == 3
    assert "row 3: text (column 'text') holds a list" in skipped.skipped[1]
    assert "row 4: labels (column 'labels') hold an object" in skipped.skipped[2]
    nested = read_examples(
        config(**{**cfg.__dict__, "text": "meta.title", "bad_rows": "skip"}), str(path)
    )
    assert nested.texts == ["t", "t", "t"] and nested.rows == [1, 2, 3]
    with pytest.raises(DataError, match="row 1: text_pair \\(column 'meta'\\) holds an object"):
        read_examples(config(**{**cfg.__dict__, "text_pair": "meta"}), str(path))


def test_label_settings_that_cannot_work(write_csv):
    from xtune.config import ConfigError

    path = write_csv("t.csv", ROWS)
    with pytest.raises(ConfigError, match="data.label_separator is empty"):
        read_examples(config(label_separator=""), str(path))
    with pytest.raises(ConfigError, match="data.labels is not set"):
        read_examples(config(labels=None), str(path))


def test_header_only_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("body,title,labels\n", encoding="utf-8")
    with pytest.raises(DataError, match="h.csv: no data rows \\(only a header\\)"):
        read_examples(config(), str(path))


def test_unknown_labels_policies(write_csv):
    train = write_csv("train.csv", ROWS)
    dev_rows = ROWS + [
        {"id": 4, "title": "x", "body": "新的", "labels": "交通|未知"},
        {"id": 5, "title": "y", "body": "只有未知", "labels": "未知|另一个"},
    ]
    dev = write_csv("dev.csv", dev_rows)
    cfg = config(train=str(train), dev=str(dev))
    with pytest.raises(DataError) as error:
        load_splits(cfg)
    assert "dev.csv: row 4: label(s) '未知' not in the label vocabulary" in str(error.value)
    assert "data.unknown_labels: ignore_labels" in str(error.value)

    ignored, _ = load_splits(config(**{**cfg.__dict__, "unknown_labels": "ignore_labels"}))
    assert len(ignored["dev"]) == 5
    assert ignored["dev"].label_sets[3:] == [["交通"], []]
    assert ignored["dev"].dropped_labels == {"未知": 2, "另一个": 1}
    assert any("3 occurrence(s) of 2 label(s) not in train" in w for w in ignored["dev"].warnings)

    skipped, _ = load_splits(config(**{**cfg.__dict__, "unknown_labels": "skip_rows"}))
    assert skipped["dev"].rows == [1, 2, 3]  # skipped although bad_rows is 'error'
    assert len(skipped["dev"].skipped) == 2 and "row 5" in skipped["dev"].skipped[1]


def test_warns_when_dev_or_test_labels_are_mostly_unseen_or_rare(write_csv):
    common = [{"body": f"t{i}", "labels": "common"} for i in range(10)]
    rare = [{"body": f"r{i}", "labels": f"rare{i % 3}"} for i in range(6)]
    train = write_csv("train.csv", common + rare)
    dev = write_csv("dev.csv", common[:4] + rare[:2])
    test = write_csv("test.csv", common[:1] + rare[:3] + [{"body": "n", "labels": "new"}])
    cfg = config(
        train=str(train),
        dev=str(dev),
        test=str(test),
        text_pair=None,
        unknown_labels="ignore_labels",
    )
    splits, _ = load_splits(cfg)
    assert not any("unseen in train" in w for w in splits["dev"].warnings)  # 2 of 6 rare
    (warning,) = [w for w in splits["test"].warnings if "unseen in train" in w]
    assert "test (" in warning and "4 of 5 label occurrences (80%)" in warning
    assert "unseen in train (1)" in warning and "fewer than 5 train examples: 3" in warning


def test_degenerate_train_files(write_csv):
    one = write_csv("one.csv", [{"body": "a", "labels": "x|y"}])
    with pytest.raises(DataError, match="one.csv: 1 usable row\\(s\\) cannot be split"):
        load_splits(config(train=str(one), text_pair=None))
    splits, vocab = load_splits(config(train=str(one), dev=str(one), text_pair=None))
    assert len(splits["train"]) == 1 and vocab.names == ["x", "y"]

    single = write_csv("single.csv", [{"body": f"t{i}", "labels": "x"} for i in range(10)])
    with pytest.raises(DataError, match="single.csv: one label only \\('x'\\); .* at least two"):
        load_splits(config(train=str(single), text_pair=None))

    same = write_csv("same.csv", [{"body": f"t{i}", "labels": "x|y"} for i in range(10)])
    splits, _ = load_splits(config(train=str(same), text_pair=None, max_train_rows=5))
    assert (len(splits["train"]), len(splits["dev"])) == (5, 2)
    assert any("every train row has the same labels (x|y)" in n for n in splits["train"].warnings)

    labels = ["Road"] * 3 + ["road"] * 2 + ["ＲＯＡＤ"] + ["rail"] * 4
    near = write_csv("near.csv", [{"body": f"t{i}", "labels": x} for i, x in enumerate(labels)])
    splits, vocab = load_splits(config(train=str(near), dev=str(near), text_pair=None))
    assert len(vocab) == 4  # still separate classes: the data says so
    (warning,) = [n for n in splits["train"].warnings if "differ only by case" in n]
    assert "'Road' (3 rows), 'road' (2 rows), 'ＲＯＡＤ' (1 rows)" in warning


def test_a_stratified_split_with_an_empty_part_falls_back_to_a_plain_seeded_split(write_csv):
    """Iterative stratification puts all 3 rows (one label each) in train, none in dev."""
    path = write_csv("abc.csv", [{"body": n, "labels": n} for n in "abc"])
    splits, _ = load_splits(config(train=str(path), text_pair=None))
    assert (len(splits["train"]), len(splits["dev"])) == (2, 1)
    assert any("used a plain seeded split" in note for note in splits["train"].warnings)
    again, _ = load_splits(config(train=str(path), text_pair=None))
    assert again["dev"].rows == splits["dev"].rows


def test_label_names_file_in_another_encoding(tmp_path):
    names = tmp_path / "names.txt"
    names.write_bytes("交通\n住房\n".encode("gb18030"))
    train = tmp_path / "train.csv"  # data.encoding is the encoding of every data file
    train.write_bytes("body,labels\na,交通\nb,住房\n".encode("gb18030"))
    cfg = config(train=str(train), dev=str(train), text_pair=None, label_names=str(names))
    with pytest.raises(DataError, match="names.txt: line 1: bytes that are not valid UTF-8"):
        load_splits(cfg)
    _, vocab = load_splits(config(**{**cfg.__dict__, "encoding": "gb18030"}))
    assert vocab.names == ["交通", "住房"]


def test_every_row_malformed_and_skipped(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": \n[1]\n', encoding="utf-8")
    cfg = config(text="text", text_pair=None, bad_rows="skip")
    with pytest.raises(DataError, match="bad.jsonl: no usable rows \\(2 skipped; first: .*line 1"):
        read_examples(cfg, str(path))
