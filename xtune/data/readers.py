"""Read CSV, TSV, JSONL and XLSX tables into pandas, with errors that name the file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".xlsx": "xlsx",
    ".xls": "xlsx",
}


class DataError(ValueError):
    """A data file is missing, unreadable, or does not have the expected columns or rows."""


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
) -> pd.DataFrame:
    """Read one table; every cell stays a string (or NaN) so nothing is silently coerced.

    `columns` names the columns of a header-less file (e.g. GoEmotions' TSVs).
    `encoding_errors="replace"` reads undecodable bytes as U+FFFD so bad rows can be skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    fmt = detect_format(path, fmt)
    header = None if columns else "infer"
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(
                path,
                sep="," if fmt == "csv" else "\t",
                header=header if columns is None else None,
                names=columns,
                dtype=str,
                keep_default_na=False,
                quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE,
                encoding="utf-8",
                encoding_errors=encoding_errors,
            )
        elif fmt == "jsonl":
            text = path.read_bytes().decode("utf-8", errors=encoding_errors)
            frame = pd.read_json(io.StringIO(text), lines=True, dtype=False)
        elif fmt == "xlsx":
            frame = pd.read_excel(
                path, dtype=str, header=0 if columns is None else None, names=columns
            )
            frame = frame.fillna("")
        else:
            raise DataError(f"{path}: unknown format {fmt!r}; valid: csv, tsv, jsonl, xlsx")
    except UnicodeDecodeError as error:
        line = _first_undecodable_line(path)
        raise DataError(
            f"{path}: line {line}: bytes that are not valid UTF-8 ({error.reason}); "
            "save the file as UTF-8"
        ) from None
    except (pd.errors.ParserError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: could not be parsed as {fmt}: {error}") from None
    return frame


def _first_undecodable_line(path: Path) -> int:
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 0
