"""Bad-input corpus, data side: every kind of data file in issue 14 ends as one clear error
naming the file and row/line/column, or is read correctly; nothing on disk changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_encoder_spec
from tests.reliability.helpers import assert_user_error, run_cli, snapshot
from xtune.config import ConfigError, DataConfig
from xtune.data.examples import load_splits
from xtune.data.readers import DataError

GOOD = "body,labels\n噪音扰民,环境|噪音\n道路破损,交通\n小区停水,住房\n路灯不亮,交通|环境\n"


def xlsx(*sheets: tuple[str, dict[str, list]]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with pd.ExcelWriter(path) as writer:
            for name, columns in sheets:
                pd.DataFrame(columns).to_excel(writer, sheet_name=name, index=False)

    return write


def jsonl(*records: dict) -> str:
    return "\n".join(json.dumps(record, ensure_ascii=False) for record in records) + "\n"


@dataclass
class Kind:
    """One data kind: files to write, `data.*` settings, and the error or the check."""

    files: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    error: tuple[str, ...] = ()  # needles of the one error message (a DataError/ConfigError)
    check: Callable[[dict, Any], None] | None = None
    single_label: bool = False  # also run tasks.classification.check_label_counts with softmax_ce


def rows_of(*labels: str) -> str:
    return "body,labels\n" + "".join(f"文本{i},{label}\n" for i, label in enumerate(labels))


KINDS: dict[str, Kind] = {
    "missing file": Kind({}, error=("train.csv: data file not found",)),
    "empty file": Kind({"train.csv": ""}, error=("train.csv: the file is empty",)),
    "header-only file": Kind(
        {"train.csv": "body,labels\n"}, error=("train.csv: no data rows (only a header)",)
    ),
    "missing text column": Kind(
        {"train.csv": GOOD},
        {"text": "content"},
        error=("train.csv: column 'content' (from data.text) not found", "columns: body, labels"),
    ),
    "missing label column": Kind(
        {"train.csv": GOOD},
        {"labels": "tags"},
        error=("train.csv: column 'tags' (from data.labels) not found",),
    ),
    "empty text": Kind(
        {"train.csv": GOOD + ",交通\n"}, error=("train.csv: row 5: empty text", "bad_rows: skip")
    ),
    "whitespace-only text": Kind(
        {"train.csv": GOOD + '"  \t ",交通\n'}, error=("train.csv: row 5: empty text",)
    ),
    "empty or NaN label cell, multi-label": Kind(
        {"train.csv": GOOD + "无标签,\n也无,NaN\n"},
        {"dev": "train.csv"},
        check=lambda splits, vocab: (
            splits["train"].label_sets[4:] == [[], []] and "NaN" not in vocab
        ),
    ),
    "empty label cell, single-label": Kind(
        {"train.csv": rows_of("a", "b", "a", "", "b")},
        {"dev": "train.csv"},
        error=("train.csv: row 4: the loss", "single-label", "no label"),
        single_label=True,
    ),
    "NaN label cell, single-label": Kind(
        {"train.csv": rows_of("a", "NaN", "b")},
        {"dev": "train.csv"},
        error=("train.csv: row 2:", "no label"),
        single_label=True,
    ),
    "empty label_separator": Kind(
        {"train.csv": GOOD}, {"label_separator": ""}, error=("data.label_separator",)
    ),
    "dev label not in train": Kind(
        {"train.csv": GOOD, "dev.csv": rows_of("交通", "未知|交通")},
        {"dev": "dev.csv"},
        error=("dev.csv: row 2: label(s) '未知' not in", "data.unknown_labels"),
    ),
    "dev label not in train, ignore_labels": Kind(
        {"train.csv": GOOD, "dev.csv": rows_of("交通", "未知|交通")},
        {"dev": "dev.csv", "unknown_labels": "ignore_labels"},
        check=lambda splits, vocab: (
            splits["dev"].label_sets == [["交通"], ["交通"]]
            and "1 occurrence(s) of 1 label(s) not in train" in splits["dev"].warnings[0]
        ),
    ),
    "GB18030 data": Kind(
        {"train.csv": GOOD.encode("gb18030")},
        error=("train.csv: line 2:", "not valid UTF-8", "data.encoding: gb18030"),
    ),
    "GB18030 data with data.encoding": Kind(
        {"train.csv": GOOD.encode("gb18030")},
        {"encoding": "gb18030"},
        check=lambda splits, vocab: "交通" in vocab,
    ),
    "UTF-8 text holding U+FFFD itself": Kind(
        {"train.csv": GOOD + "乱码\ufffd字符,交通\n"},
        {"dev": "train.csv"},
        check=lambda splits, vocab: splits["train"].texts[4] == "乱码\ufffd字符",
    ),
    "undecodable bytes in one row, bad_rows: skip": Kind(
        {
            # \udcb1 is written as the lone byte 0xB1 (not UTF-8) by surrogateescape
            "train.csv": (GOOD + '"多行\n文本",交通\n坏\udcb1字节,交通\n好\ufffd字,住房\n').encode(
                "utf-8", "surrogateescape"
            )
        },
        {"dev": "train.csv", "bad_rows": "skip"},
        check=lambda splits, vocab: (
            splits["train"].texts[-1] == "好\ufffd字"
            and len(splits["train"]) == 6
            and splits["train"].skipped
            == [
                f"{splits['train'].source}: row 6: text has bytes that are not valid UTF-8 (line 8)"
            ]
        ),
    ),
    "UTF-8 BOM": Kind(
        {"train.csv": "\ufeff" + GOOD},
        check=lambda splits, vocab: "噪音" in vocab,
    ),
    "CRLF line ends": Kind(
        {"train.csv": GOOD.replace("\n", "\r\n")},
        {"dev": "train.csv"},
        check=lambda splits, vocab: splits["train"].label_sets[1] == ["交通"],
    ),
    "embedded newline and quotes": Kind(
        {"train.csv": GOOD + '"第一行\n第二行 ""引号""",交通\n'},
        {"dev": "train.csv"},
        check=lambda splits, vocab: splits["train"].texts[4] == '第一行\n第二行 "引号"',
    ),
    "unbalanced quote": Kind(
        {"train.csv": GOOD + '"没有结束,交通\n最后,住房\n'},
        error=("train.csv: line 6:", "never closed"),
    ),
    "TSV with a stray tab": Kind(
        {"train.tsv": "body\tlabels\n甲\t交通\n乙\t丙\t住房\n"},
        {"train": "train.tsv"},
        error=("train.tsv: line 3: 3 field(s)", "a stray tab"),
    ),
    "TSV with a missing tab": Kind(
        {"train.tsv": "body\tpair\tlabels\n甲\t一\t交通\n乙 二\t住房\n"},
        {"train": "train.tsv", "text_pair": "pair"},
        error=("train.tsv: line 3: 2 field(s)", "a missing tab"),
    ),
    "CSV with the wrong field count": Kind(
        {"train.csv": GOOD + "少一个字段\n"}, error=("train.csv: line 6: 1 field(s)",)
    ),
    "XLSX with two sheets": Kind(
        {
            "train.xlsx": xlsx(
                ("first", {"body": ["甲", "乙"], "labels": ["a", "b"]}),
                ("second", {"body": ["丙"], "labels": ["c"]}),
            )
        },
        {"train": "train.xlsx", "dev": "train.xlsx"},
        check=lambda splits, vocab: vocab.names == ["a", "b"],
    ),
    "XLSX sheet that does not exist": Kind(
        {"train.xlsx": xlsx(("first", {"body": ["甲"], "labels": ["a"]}))},
        {"train": "train.xlsx", "sheet": "Sheet9"},
        error=("train.xlsx: no sheet 'Sheet9' (data.sheet)", "first"),
    ),
    "duplicated rows": Kind(
        {"train.csv": GOOD + "道路破损,交通\n道路破损,交通\n"},
        {"dev": "train.csv"},
        check=lambda splits, vocab: len(splits["train"]) == 6,
    ),
    "single-row train": Kind(
        {"train.csv": rows_of("a|b")}, error=("train.csv: 1 usable row(s) cannot be split",)
    ),
    "single-row train with a dev file": Kind(
        {"train.csv": rows_of("a|b"), "dev.csv": rows_of("a")},
        {"dev": "dev.csv"},
        check=lambda splits, vocab: len(splits["train"]) == 1,
    ),
    "one label set for every row": Kind(
        {"train.csv": rows_of(*["a|b"] * 6)},
        check=lambda splits, vocab: any(
            "same labels (a|b)" in note for note in splits["train"].warnings
        ),
    ),
    "one-label vocabulary": Kind(
        {"train.csv": rows_of("a", "a", "", "a")},
        error=("train.csv: one label only ('a')",),
    ),
    "100k-character text": Kind(
        {"train.csv": GOOD + "长" * 100_000 + ",交通\n"},
        {"dev": "train.csv"},
        check=lambda splits, vocab: len(splits["train"].texts[4]) == 100_000,
    ),
    "JSONL with a malformed line": Kind(
        {"train.jsonl": jsonl({"body": "甲", "labels": "a"}) + '{"body": "乙", "labels": }\n'},
        {"train": "train.jsonl"},
        error=("train.jsonl: line 2: not valid JSON",),
    ),
    "JSON with nested fields": Kind(
        {
            "train.json": json.dumps(
                [
                    {"doc": {"body": t}, "labels": [label]}
                    for t, label in [("甲", "a"), ("乙", "b")]
                ],
                ensure_ascii=False,
                indent=2,
            )
        },
        {"train": "train.json", "dev": "train.json", "text": "doc.body", "label_format": "list"},
        check=lambda splits, vocab: splits["train"].texts == ["甲", "乙"],
    ),
    "JSON with a dict-valued text column": Kind(
        {"train.jsonl": jsonl({"body": {"zh": "甲"}, "labels": "a"})},
        {"train": "train.jsonl"},
        error=("train.jsonl: row 1: text (column 'body') holds an object",),
    ),
}


def write_files(folder: Path, files: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")


def data_settings(folder: Path, kind: Kind) -> dict[str, Any]:
    settings = {"root": str(folder), "train": "train.csv", "text": "body", "labels": "labels"}
    return {**settings, "text_pair": None, "cache_dir": None, **kind.data}


def prepare(folder: Path, kind: Kind) -> None:
    splits, vocab = load_splits(DataConfig(**data_settings(folder, kind)))
    if kind.single_label:
        from xtune.losses import get_loss
        from xtune.tasks.classification import check_label_counts

        check_label_counts(get_loss("softmax_ce"), splits)
    assert kind.check is not None, "expected an error"
    assert kind.check(splits, vocab)


@pytest.mark.parametrize("name", list(KINDS))
def test_each_data_kind_is_one_clear_error_or_read_correctly(tmp_path, name):
    kind, folder = KINDS[name], tmp_path / "data"
    write_files(folder, kind.files)
    before = snapshot(folder)
    if kind.error:
        with pytest.raises((DataError, ConfigError)) as error:
            prepare(folder, kind)
        message = str(error.value)
        assert "\n" not in message, message  # one line
        for needle in kind.error:
            assert needle in message, f"{needle!r} not in {message!r}"
    else:
        prepare(folder, kind)
    assert snapshot(folder) == before


CLI_KINDS = [
    "TSV with a missing tab",
    "unbalanced quote",
    "JSONL with a malformed line",
    "GB18030 data",
    "dev label not in train",
    "empty label cell, single-label",
    "JSON with a dict-valued text column",
]


@pytest.mark.parametrize("name", CLI_KINDS)
def test_xtune_train_on_bad_data_is_one_line_exit_2_and_changes_nothing(tmp_path, capsys, name):
    kind = KINDS[name]
    write_files(tmp_path / "data", kind.files)
    finished = tmp_path / "runs" / "earlier"  # a finished run from before: must stay as it is
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text('{"best": {"subset_accuracy": 0.5}}\n')
    (finished / "model.weights.h5").write_bytes(b"\x89HDF weights")
    data = data_settings(tmp_path / "data", kind)
    data.setdefault("dev", data["train"])
    config = {
        "data": {**data, "max_length": 32},
        "encoder": tiny_encoder_spec(),
        "head": {"name": "pooling", "pooling": "mean"},
        "loss": "softmax_ce" if kind.single_label else "bce",
        "training": {"epochs": 1, "verbose": 0, "output_dir": str(tmp_path / "runs")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    before = snapshot(tmp_path)
    code, out, err = run_cli(["train", path], capsys)
    assert_user_error(code, err, *kind.error)
    assert snapshot(tmp_path) == before


def test_prepare_data_keeps_the_data_warnings_for_the_results(tmp_path):
    """What `train` puts into `RunResult.extra["data_warnings"]` (and grids into results lines)."""
    from xtune.config import parse_run_config
    from xtune.encoders import load_encoder
    from xtune.training.trainer import prepare_data

    kind = KINDS["dev label not in train, ignore_labels"]
    write_files(tmp_path / "data", kind.files)
    raw = {
        "data": {**data_settings(tmp_path / "data", kind), "max_length": 16},
        "encoder": tiny_encoder_spec(),
        "training": {"output_dir": str(tmp_path / "runs")},
    }
    config = parse_run_config(raw)
    data = prepare_data(config, load_encoder(config.encoder))
    unknown, mostly_unseen = data.warnings
    assert "dev.csv: 1 occurrence(s) of 1 label(s) not in train" in unknown
    assert mostly_unseen.startswith("dev (") and "3 of 3 label occurrences (100%)" in mostly_unseen
