"""Table readers: field counts, quoting, encodings, JSON lines and documents, Excel sheets."""

import json
import logging
import zipfile

import pandas as pd
import pytest

from xtune.data.readers import DataError, load_table, read_table


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        (
            "missing.tsv",
            "text\tpair\tlabels\na\tb\tx\nc\ty\n",
            ["line 3", "2 field(s)", "a missing tab"],
        ),
        ("stray.tsv", "text\tpair\tlabels\na\tb\tx\tz\n", ["line 2", "4 field(s)", "a stray tab"]),
        (
            "missing.csv",
            "text,pair,labels\na,b,x\n\nc,y\n",
            ["line 4", "2 field(s)", "missing comma"],
        ),
        ("stray.csv", 'text,labels\n"a",x\nb,c,x\n', ["line 3", "3 field(s)", "unquoted comma"]),
    ],
)
def test_a_row_with_a_missing_or_extra_field_names_the_file_and_line(
    tmp_path, name, content, needles
):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message, message
    assert "data.bad_rows: skip" in message


def test_header_less_tsv_checks_fields_against_the_given_columns(tmp_path):
    path = write(tmp_path, "go.tsv", "so happy\t0\tid1\nugh fine\t1,2\n")
    with pytest.raises(DataError, match=r"go.tsv: line 2: 2 field\(s\) where the header has 3"):
        read_table(path, columns=["text", "labels", "id"])


def test_skipped_malformed_rows_keep_the_row_numbers_of_the_rest(tmp_path):
    path = write(tmp_path, "t.tsv", "text\tlabels\na\tx\nb\n\nc\ty\n")
    table = load_table(path, bad_rows="skip")
    assert table.frame["text"].tolist() == ["a", "c"]
    assert table.rows == [1, 3]
    assert len(table.skipped) == 1 and "line 3" in table.skipped[0]


def test_bom_crlf_embedded_newlines_and_quotes(tmp_path):
    content = '\ufefftext,labels\r\n"line one\r\nline ""two""",a|b\r\n"x, y",c\r\n'
    path = write(tmp_path, "q.csv", content.encode("utf-8"))
    frame = read_table(path)
    assert list(frame.columns) == ["text", "labels"]
    assert frame["text"].tolist() == ['line one\r\nline "two"', "x, y"]
    assert frame["labels"].tolist() == ["a|b", "c"]


def test_tsv_keeps_quotes_as_plain_characters(tmp_path):
    path = write(tmp_path, "q.tsv", 'text\tlabels\n" he said "hi\tx\n')
    assert read_table(path)["text"].tolist() == ['" he said "hi']


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('text,labels\na,x\n"never closed,x\nb,y\n', ["line 3", "never closed"]),
        ('text,labels\n"a"b,x\n', ["line 2", "must be doubled"]),
    ],
)
def test_bad_quoting_is_one_error_with_the_line(tmp_path, content, needles):
    path = write(tmp_path, "bad.csv", content)
    with pytest.raises(DataError) as error:
        read_table(path)
    for needle in [str(path), *needles]:
        assert needle in str(error.value)


def test_a_tab_separated_file_named_csv_gets_a_hint(tmp_path):
    path = write(tmp_path, "tabs.csv", "text\tlabels\nhello, world\tx\n")
    with pytest.raises(DataError, match="set data.format: tsv"):
        read_table(path)


def test_encodings(tmp_path):
    path = write(tmp_path, "gb.csv", "text,labels\n噪音扰民,环境\n".encode("gb18030"))
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert "line 2" in message and "not valid UTF-8" in message
    assert "data.encoding: gb18030" in message
    assert read_table(path, encoding="gb18030")["text"].tolist() == ["噪音扰民"]
    with pytest.raises(DataError, match="unknown encoding 'klingon' \\(data.encoding\\)"):
        read_table(path, encoding="klingon")


def test_encoding_auto_is_decided_per_file(tmp_path):
    """`data.encoding: auto`: UTF-8 with or without a byte-order mark, else GB18030."""
    table = "text,labels\n噪音扰民,环境\n"
    files = {
        "gb.csv": table.encode("gb18030"),
        "bom.csv": "\ufeff" + table,
        "plain.csv": table,
    }
    for name, content in files.items():
        frame = read_table(write(tmp_path, name, content), encoding="auto")
        assert list(frame.columns) == ["text", "labels"], name
        assert frame["text"].tolist() == ["噪音扰民"], name


@pytest.mark.parametrize("content", ["", "  \n\n", "\ufeff"])
def test_an_empty_file_is_named(tmp_path, content):
    path = write(tmp_path, "empty.csv", content)
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        read_table(path)


def test_header_only_and_blank_or_repeated_header_names(tmp_path):
    assert read_table(write(tmp_path, "h.csv", "text,labels\n")).empty
    frame = read_table(write(tmp_path, "names.csv", ",text,text\n1,a,b\n"))
    assert list(frame.columns) == ["Unnamed: 0", "text", "text.1"]


def test_a_very_long_field_is_read_whole(tmp_path):
    text = "长" * 200_000
    path = write(tmp_path, "long.csv", f"text,labels\n{text},x\n")
    assert read_table(path)["text"].str.len().tolist() == [200_000]


def test_a_malformed_json_line_names_the_line(tmp_path):
    lines = ['{"text": "a", "labels": "x"}', "", '{"text": "b", "labels": }', '{"text": "c"}']
    path = write(tmp_path, "d.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert "d.jsonl: line 3: not valid JSON" in message and "position" not in message
    table = load_table(path, bad_rows="skip")
    assert table.frame["text"].tolist() == ["a", "c"] and table.rows == [1, 4]
    assert "line 3" in table.skipped[0]


def test_a_json_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a"}\n["text", "b"]\n')
    with pytest.raises(DataError, match="line 2: expected a JSON object .*found a list"):
        read_table(path)


def test_a_json_line_holding_a_list_of_objects_gives_one_row_each(tmp_path):
    """CAIL2019's format: each line a document, a list of {sentence, labels} objects."""
    lines = [
        json.dumps([{"sentence": "s1", "labels": []}, {"sentence": "s2", "labels": ["DV1"]}]),
        json.dumps([{"sentence": "s3", "labels": ["DV2", "DV3"]}]),
    ]
    path = write(tmp_path, "docs.json", "\n".join(lines) + "\n")
    table = load_table(path)
    assert table.frame["sentence"].tolist() == ["s1", "s2", "s3"]
    assert table.frame["labels"].tolist()[2] == ["DV2", "DV3"]
    assert table.rows == [1, 1, 2]


def test_json_documents_and_nested_fields(tmp_path):
    records = [
        {"text": "a", "meta": {"title": "t1", "where": {"city": "x"}}, "labels": ["p", "q"]},
        {"text": "b", "meta": {"title": "t2"}, "labels": []},
    ]
    as_list = write(tmp_path, "list.json", json.dumps(records, indent=2))
    by_key = write(tmp_path, "keys.json", json.dumps({"0": records[0], "1": records[1]}, indent=1))
    for path in (as_list, by_key):
        frame = read_table(path)
        assert frame["meta.title"].tolist() == ["t1", "t2"]
        assert frame["meta.where.city"].tolist()[0] == "x"
        assert frame["meta"].tolist()[0] == records[0]["meta"]  # kept for a clear error later
        assert frame["labels"].tolist() == [["p", "q"], []]
    broken = write(tmp_path, "broken.json", '[\n {"text": "a"},\n {"text": }\n]\n')
    with pytest.raises(DataError, match="broken.json: line 3: not valid JSON"):
        read_table(broken)
    scalar = write(tmp_path, "mapping.json", '{\n"a": ["x"],\n"b": ["y"]\n}')
    with pytest.raises(DataError, match="a JSON list of objects; found an object"):
        read_table(scalar)


def test_xlsx_reads_the_first_sheet_and_says_so(tmp_path, caplog):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"text": ["a"], "labels": ["x"]}).to_excel(
            writer, sheet_name="first", index=False
        )
        pd.DataFrame({"text": ["b", "c"], "labels": ["y", "z"]}).to_excel(
            writer, sheet_name="second", index=False
        )
    with caplog.at_level(logging.INFO, logger="xtune.data.readers"):
        assert read_table(path)["text"].tolist() == ["a"]
    assert "read sheet 'first' (the first)" in caplog.text and "also has: second" in caplog.text
    assert read_table(path, sheet="second")["text"].tolist() == ["b", "c"]
    with pytest.raises(DataError, match="no sheet 'third' \\(data.sheet\\); the sheets are: first"):
        read_table(path, sheet="third")


def test_a_broken_xlsx_is_one_error(tmp_path):
    path = write(tmp_path, "broken.xlsx", b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="broken.xlsx: not a readable Excel file"):
        read_table(path)
    good = tmp_path / "good.xlsx"
    pd.DataFrame({"text": ["a"]}).to_excel(good, index=False)
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w") as damaged:
        for name in source.namelist():
            damaged.writestr(name, b"<garbage" if "sheet1" in name else source.read(name))
    with pytest.raises(DataError, match="broken.xlsx: not a readable Excel file \\(unclosed"):
        read_table(path)
