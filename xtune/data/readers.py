"""Read CSV, TSV, JSON(L) and XLSX tables into pandas, with errors that name the file and line."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".xlsx": "xlsx",
    ".xls": "xlsx",
}

# A long document in one CSV field is fine; the csv module's default limit is 131,072 characters.
csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))


class DataError(ValueError):
    """A data file is missing, unreadable, or does not have the expected columns or rows."""


class DecodeError(DataError):
    """A text file has bytes that are not valid in its encoding (`data.encoding`)."""


@dataclass
class Table:
    """A read table. CSV/TSV/XLSX cells are strings; JSON cells keep their JSON values.

    `rows` are the 1-based data-row numbers of the frame's rows: a malformed record skipped
    under `bad_rows="skip"` keeps its number, so later messages still point at the file.
    """

    frame: pd.DataFrame
    rows: list[int]
    skipped: list[str] = field(default_factory=list)
    lines: list[int] | None = None  # the line each row starts on, where it is not `rows`


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; set data.format "
            f"to one of csv, tsv, jsonl, xlsx"
        )
    return fmt


def read_table(
    path: str | Path,
    fmt: str = "auto",
    columns: list[str] | None = None,
    encoding_errors: str = "strict",
    encoding: str = "utf-8",
    sheet: str | None = None,
) -> pd.DataFrame:
    """Read one table; see `load_table`. A malformed record is an error."""
    table = load_table(
        path, fmt, columns, encoding=encoding, encoding_errors=encoding_errors, sheet=sheet
    )
    return table.frame


def load_table(
    path: str | Path,
    fmt: str = "auto",
    columns: list[str] | None = None,
    *,
    encoding: str = "utf-8",
    encoding_errors: str = "strict",
    sheet: str | None = None,
    bad_rows: str = "error",
) -> Table:
    """Read one table; nothing is silently coerced or shifted.

    `columns` names the columns of a header-less file (e.g. GoEmotions' TSVs).
    `encoding_errors="mark"` keeps each undecodable byte as a lone surrogate (U+DC80-U+DCFF,
    Python's `surrogateescape`), which no decoded text can hold: `has_undecodable_bytes` finds
    the rows where decoding failed, while a file's own U+FFFD characters stay text.
    `encoding_errors="replace"` reads them as U+FFFD, indistinguishable from the file's own.
    A record with the wrong number of fields or a malformed JSON line is an error naming the
    line, or with `bad_rows="skip"` is skipped and listed in `Table.skipped`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    fmt = detect_format(path, fmt)
    if fmt == "xlsx":
        return read_xlsx(path, columns, sheet)
    if fmt not in ("csv", "tsv", "jsonl"):
        raise DataError(f"{path}: unknown format {fmt!r}; valid: csv, tsv, jsonl, xlsx")
    text = decode(path, path.read_bytes(), encoding, encoding_errors)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if fmt == "jsonl":
        return read_json_records(path, text, bad_rows)
    return read_delimited(path, text, fmt, columns, bad_rows)


# ---------------------------------------------------------------- text and encodings


# What `encoding_errors="mark"` leaves where a byte could not be decoded.
UNDECODABLE = re.compile("[\udc80-\udcff]")


def has_undecodable_bytes(text: str) -> bool:
    """Whether `text` (read with `encoding_errors="mark"`) held bytes that did not decode."""
    return UNDECODABLE.search(text) is not None


# `data.encoding: auto`, decided per file: UTF-8 (with or without a byte-order mark) when the
# whole file decodes as UTF-8, else GB18030 (which includes GBK and GB2312).
AUTO_ENCODING = "auto"


def detect_encoding(raw: bytes) -> str:
    """`utf-8` when `raw` is valid UTF-8, else `gb18030` (`data.encoding: auto`)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def decode(path: Path, raw: bytes, encoding: str, errors: str) -> str:
    errors = "surrogateescape" if errors == "mark" else errors
    if encoding == AUTO_ENCODING:
        encoding = detect_encoding(raw)
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r} (data.encoding)") from None
    try:
        # utf-8-sig drops a byte-order mark, which would otherwise stick to the first column name
        text = raw.decode("utf-8-sig" if codec == "utf-8" else encoding, errors)
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DecodeError(
            f"{path}: line {line}: bytes that are not valid {encoding.upper()} "
            f"({error.reason}); set data.encoding to the file's encoding"
            f"{guess_encoding(raw, codec)} or save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def guess_encoding(raw: bytes, tried: str) -> str:
    """A hint for the common case: Chinese text saved as GB18030/GBK rather than UTF-8."""
    for candidate in ("utf-8", "gb18030"):
        if candidate == tried:
            continue
        try:
            raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        return f" (it decodes as {candidate}: data.encoding: {candidate}, or auto)"
    return ""


# ---------------------------------------------------------------- CSV and TSV


def read_delimited(
    path: Path, text: str, fmt: str, columns: list[str] | None, bad_rows: str
) -> Table:
    # TSV files (GoEmotions, GLUE) use quotes as plain characters; CSV quotes fields.
    dialect = {"delimiter": ","} if fmt == "csv" else {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, **dialect)
    header = list(columns) if columns else None
    records: list[list[str]] = []
    rows: list[int] = []
    lines: list[int] = []
    skipped: list[str] = []
    number, start = 0, 1  # data records so far; the line the next record starts on
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line
            if header is None:
                header = header_names(fields)
                continue
            number += 1
            if len(fields) != len(header):
                message = field_count_message(path, line, fields, header, fmt)
                if bad_rows != "skip":
                    raise DataError(message + " (set data.bad_rows: skip to drop such rows)")
                skipped.append(message)
                continue
            records.append(fields)
            rows.append(number)
            lines.append(line)
    except csv.Error as error:
        raise DataError(f"{path}: line {start}: {describe_csv_error(error, fmt)}") from None
    frame = pd.DataFrame(records, columns=header or [], dtype=str)
    return Table(frame, rows, skipped, lines)


def header_names(fields: list[str]) -> list[str]:
    """Header names as pandas gives them: blank -> 'Unnamed: i', repeats -> 'name.1'."""
    names: list[str] = []
    for index, name in enumerate(fields):
        name = name.strip() or f"Unnamed: {index}"
        candidate, repeat = name, 0
        while candidate in names:
            repeat += 1
            candidate = f"{name}.{repeat}"
        names.append(candidate)
    return names


def field_count_message(
    path: Path, line: int, fields: list[str], header: list[str], fmt: str
) -> str:
    separator = "tab" if fmt == "tsv" else "comma"
    problem = "a missing" if len(fields) < len(header) else "a stray"
    if fmt == "csv" and len(fields) > len(header):
        problem = "an unquoted comma inside a field, or a stray"
    hint = ""
    if fmt == "csv" and "\t" in ",".join(header):
        hint = "; the header holds tabs: for a tab-separated file set data.format: tsv"
    return (
        f"{path}: line {line}: {len(fields)} field(s) where the header has {len(header)} "
        f"({', '.join(header)}): {problem} {separator}{hint}"
    )


def describe_csv_error(error: csv.Error, fmt: str) -> str:
    reason = str(error)
    if "unexpected end of data" in reason or "EOF" in reason:
        return 'a quoted field that starts here is never closed (an unbalanced ")'
    if "expected after" in reason:
        return (
            'a quote inside a quoted field must be doubled ("") and a closing quote must be '
            f"followed by a comma ({reason})"
        )
    return f"not valid {fmt.upper()} ({reason})"


# ---------------------------------------------------------------- JSON lines and JSON


def read_json_records(path: Path, text: str, bad_rows: str) -> Table:
    """One JSON object a line; or a whole JSON document: a list of objects, or an object of them."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    first = next(line for line in lines if line.strip())
    if not parses(first):  # a pretty-printed document, or a JSON-lines file whose line 1 is bad
        try:
            return json_document(path, json.loads(text))
        except json.JSONDecodeError as error:
            if first.strip() in ("[", "{"):
                raise DataError(
                    f"{path}: line {error.lineno}: not valid JSON ({error.msg})"
                ) from None
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    skipped: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            line_records = records_of_line(json.loads(line))
        except ValueError as error:
            message = f"{path}: line {number}: {describe_json_error(error)}"
            if bad_rows != "skip":
                raise DataError(message + " (set data.bad_rows: skip to drop such lines)") from None
            skipped.append(message)
            continue
        records.extend(with_nested_fields(record) for record in line_records)
        rows.extend([number] * len(line_records))
    return Table(pd.DataFrame(records), rows, skipped)


def records_of_line(value: Any) -> list[dict[str, Any]]:
    """A JSON-lines line's rows: one object, or a list of objects (a document of sentences,
    as CAIL2019's `[{"sentence": ..., "labels": [...]}, ...]` lines: each object is a row)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return value
    raise ValueError(
        f"expected a JSON object {{...}} or a list of objects, found {json_kind(value)}"
    )


def json_document(path: Path, value: Any) -> Table:
    if isinstance(value, dict) and all(isinstance(item, dict) for item in value.values()):
        value = list(value.values())  # {"0": {...}, "1": {...}}: records by key
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise DataError(
            f"{path}: expected one JSON object a line, or a JSON list of objects; found "
            f"{json_kind(value)}"
        )
    records = [with_nested_fields(item) for item in value]
    return Table(pd.DataFrame(records), list(range(1, len(records) + 1)))


def parses(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def with_nested_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The record plus `a.b` entries for fields nested in objects (so `data.text: meta.title`)."""
    flat = dict(record)
    for key, value in record.items():
        if isinstance(value, dict):
            for inner_key, inner in with_nested_fields(value).items():
                flat.setdefault(f"{key}.{inner_key}", inner)
    return flat


def json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


def describe_json_error(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg} at column {error.colno})"
    return str(error)


# ---------------------------------------------------------------- Excel


# What openpyxl and pandas raise on a damaged or foreign workbook (ParseError is a SyntaxError).
UNREADABLE_WORKBOOK = (ValueError, OSError, KeyError, EOFError, SyntaxError, zipfile.BadZipFile)


def read_xlsx(path: Path, columns: list[str] | None, sheet: str | None) -> Table:
    try:
        with pd.ExcelFile(path) as book:
            chosen = choose_sheet(path, [str(name) for name in book.sheet_names], sheet)
            header = 0 if columns is None else None
            frame = book.parse(chosen, dtype=str, header=header, names=columns)
    except DataError:
        raise
    except ImportError as error:  # .xls needs xlrd, which xtune does not install
        raise DataError(
            f"{path}: cannot read this Excel format ({error}); save it as .xlsx"
        ) from None
    except UNREADABLE_WORKBOOK as error:
        raise DataError(f"{path}: not a readable Excel file ({error})") from None
    frame = frame.fillna("")
    return Table(frame, list(range(1, len(frame) + 1)))


def choose_sheet(path: Path, names: list[str], sheet: str | None) -> str:
    """`data.sheet`, or the first sheet; says so in the log when there are others."""
    if not names:
        raise DataError(f"{path}: the workbook has no sheets")
    chosen = names[0] if sheet is None else str(sheet)
    if chosen not in names:
        raise DataError(
            f"{path}: no sheet {chosen!r} (data.sheet); the sheets are: {', '.join(names)}"
        )
    others = [name for name in names if name != chosen]
    if others:
        report = log.info if sheet is not None else log.warning
        report(
            "%s: read sheet %r%s; the workbook also has: %s (choose with data.sheet)",
            path,
            chosen,
            "" if sheet is not None else " (the first)",
            ", ".join(others),
        )
    return chosen
