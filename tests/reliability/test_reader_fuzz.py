"""Property test: any bytes or text given as a CSV/TSV/JSONL data file end as examples or one
clear `DataError`/`ConfigError`, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtune.config import ConfigError, DataConfig
from xtune.data.examples import load_splits, read_examples
from xtune.data.readers import DataError

SUFFIXES = ("csv", "tsv", "jsonl")
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Pieces that reach the parsers' corners: separators, quotes, line ends, a BOM, NUL, words
# that are column names, JSON punctuation, a line separator JSON allows inside strings.
PIECES = st.sampled_from(
    ["text", "labels", ",", "\t", '"', '""', "\n", "\r\n", "\r", "|", "\ufeff", "\x00", "nan",
     "{", "}", "[", "]", ":", "噪音", "a", " ", "\\", "\u2028", "1"]
)  # fmt: skip
TABLE_TEXT = st.lists(PIECES, max_size=40).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
JSON_RECORDS = st.fixed_dictionaries(
    {}, optional={"text": JSON_VALUES, "labels": JSON_VALUES, "extra": JSON_VALUES}
)


def config(path, **overrides) -> DataConfig:
    values = {"train": str(path), "text": "text", "text_pair": None, "cache_dir": None}
    return DataConfig(**{**values, **overrides})


def read_or_clear_error(path, **overrides) -> None:
    """Examples, or one DataError/ConfigError whose message names the file."""
    try:
        examples = read_examples(config(path, **overrides), str(path))
    except ConfigError:
        return
    except DataError as error:
        assert str(path) in str(error) or str(error).startswith("data.")
        return
    assert len(examples) == len(examples.label_sets) == len(examples.rows) > 0
    assert all(text.strip() for text in examples.texts)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(content=st.binary(max_size=300), suffix=st.sampled_from(SUFFIXES))
def test_arbitrary_bytes(folder, content, suffix):
    path = folder / f"bytes.{suffix}"
    path.write_bytes(content)
    read_or_clear_error(path)
    read_or_clear_error(path, bad_rows="skip")


@FUZZ
@given(
    header=st.sampled_from(["text,labels\n", "text\tlabels\n", "labels,text,x\n", ""]),
    body=TABLE_TEXT,
    suffix=st.sampled_from(SUFFIXES),
    encoding=st.sampled_from(["utf-8", "gb18030"]),
    bad_rows=st.sampled_from(["error", "skip"]),
)
def test_table_like_text(folder, header, body, suffix, encoding, bad_rows):
    path = folder / f"table.{suffix}"
    path.write_bytes((header + body).encode("utf-8", "surrogatepass"))
    read_or_clear_error(path, encoding=encoding, bad_rows=bad_rows)
    try:
        load_splits(config(path, bad_rows=bad_rows, encoding=encoding))  # the split path too
    except (DataError, ConfigError):
        pass


@FUZZ
@given(
    records=st.lists(JSON_RECORDS, max_size=6),
    junk=st.lists(st.sampled_from(["", "{", "[1]", '{"text": }', "null", "x"]), max_size=2),
    label_format=st.sampled_from(["delimited", "list"]),
    bad_rows=st.sampled_from(["error", "skip"]),
)
def test_json_lines(folder, records, junk, label_format, bad_rows):
    path = folder / "records.jsonl"
    lines = [json.dumps(record) for record in records] + junk
    path.write_text("\n".join(lines), encoding="utf-8")
    read_or_clear_error(path, label_format=label_format, bad_rows=bad_rows)
