"""Turn a table into texts, text pairs and label sets; bad rows are reported by file and row."""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xtune.config import DataConfig
from xtune.data.labels import LabelVocab
from xtune.data.readers import DataError, read_table

log = logging.getLogger(__name__)

REPLACEMENT_CHARACTER = "\ufffd"


@dataclass
class Examples:
    """Parallel lists for one split; `rows` are 1-based data-row numbers in `source`."""

    source: str
    texts: list[str]
    pairs: list[str] | None
    label_sets: list[list[str]]
    rows: list[int]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices: np.ndarray, source: str) -> Examples:
        return Examples(
            source=source,
            texts=[self.texts[i] for i in indices],
            pairs=None if self.pairs is None else [self.pairs[i] for i in indices],
            label_sets=[self.label_sets[i] for i in indices],
            rows=[self.rows[i] for i in indices],
        )


class BadRow(ValueError):
    pass


def resolve_path(config: DataConfig, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(config.root).expanduser() / candidate


def fixed_label_names(config: DataConfig) -> list[str] | None:
    """Label names given by the config (a list, or a file with one name a line)."""
    if config.label_names is None:
        return None
    if isinstance(config.label_names, list):
        return [str(n) for n in config.label_names]
    path = resolve_path(config, config.label_names)
    if not path.is_file():
        raise DataError(f"{path}: label names file (data.label_names) not found")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_examples(config: DataConfig, path: str, vocab: LabelVocab | None = None) -> Examples:
    """Read one split. Labels outside `vocab` (when given) are bad rows."""
    file = resolve_path(config, path)
    try:
        frame = read_table(file, config.format, config.columns)
    except DataError as error:
        if config.bad_rows != "skip" or "UTF-8" not in str(error):
            raise
        frame = read_table(file, config.format, config.columns, encoding_errors="replace")
    check_columns(config, frame, file)
    names = fixed_label_names(config)
    texts, pairs, label_sets, rows, skipped = [], [], [], [], []
    for position, record in enumerate(frame.to_dict("records")):
        row = position + 1
        try:
            text = clean_text(record[config.text], "text")
            pair = clean_text(record[config.text_pair], "text_pair") if config.text_pair else None
            labels = parse_labels(config, record, names)
            if vocab is not None:
                unknown = [label for label in labels if label not in vocab]
                if unknown:
                    raise BadRow(
                        f"label(s) {', '.join(map(repr, unknown))} not in the label vocabulary"
                    )
        except BadRow as error:
            message = f"{file}: row {row}: {error}"
            if config.bad_rows == "error":
                raise DataError(
                    message + " (set data.bad_rows: skip to drop such rows and count them)"
                ) from None
            skipped.append(message)
            continue
        texts.append(text)
        pairs.append(pair)
        label_sets.append(labels)
        rows.append(row)
    if skipped:
        log.warning("%s: skipped %d bad row(s); first: %s", file, len(skipped), skipped[0])
    if not texts:
        raise DataError(f"{file}: no usable rows")
    return Examples(
        source=str(file),
        texts=texts,
        pairs=pairs if config.text_pair else None,
        label_sets=label_sets,
        rows=rows,
        skipped=skipped,
    )


def check_columns(config: DataConfig, frame: pd.DataFrame, file: Path) -> None:
    needed = {"data.text": config.text}
    if config.text_pair:
        needed["data.text_pair"] = config.text_pair
    if config.label_format == "columns":
        if not config.label_columns:
            raise DataError(
                f"{file}: data.label_format is 'columns' but data.label_columns is empty"
            )
        needed.update({f"data.label_columns[{i}]": c for i, c in enumerate(config.label_columns)})
    elif config.labels:
        needed["data.labels"] = config.labels
    for key, column in needed.items():
        if column not in frame.columns:
            raise DataError(
                f"{file}: column {column!r} (from {key}) not found; "
                f"the file has columns: {', '.join(map(str, frame.columns))}"
            )


def clean_text(value: Any, what: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        value = ""
    text = str(value).strip()
    if not text:
        raise BadRow(f"empty {what}")
    if REPLACEMENT_CHARACTER in text:
        raise BadRow(f"{what} has bytes that are not valid UTF-8")
    return text


def parse_labels(config: DataConfig, record: dict[str, Any], names: list[str] | None) -> list[str]:
    if config.label_format == "columns":
        labels = []
        for column in config.label_columns or []:
            cell = str(record[column]).strip()
            if cell not in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
                raise BadRow(f"label column {column!r} holds {cell!r}; expected 0 or 1")
            if cell in ("1", "1.0", "True", "true"):
                labels.append(column)
        return labels
    cell = record[config.labels]
    if config.label_format == "list":
        items = cell if isinstance(cell, list) else parse_list_cell(cell)
    else:
        text = "" if cell is None else str(cell)
        items = [part for part in text.split(config.label_separator)]
    labels = [str(item).strip() for item in items if str(item).strip()]
    if config.labels_are_indices:
        labels = [index_to_name(label, names) for label in labels]
    elif names is not None:
        unknown = [label for label in labels if label not in names]
        if unknown:
            raise BadRow(f"label(s) {', '.join(map(repr, unknown))} not in data.label_names")
    return list(dict.fromkeys(labels))  # drop repeats, keep order


def parse_list_cell(cell: Any) -> list[Any]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell).strip() == "":
        return []
    text = str(cell)
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, list | tuple):
            return list(value)
    raise BadRow(f'labels cell {text!r} is not a list like ["a", "b"]')


def index_to_name(label: str, names: list[str] | None) -> str:
    if names is None:
        raise BadRow("data.labels_are_indices needs data.label_names")
    try:
        index = int(label)
    except ValueError:
        raise BadRow(f"label {label!r} is not an integer index") from None
    if not 0 <= index < len(names):
        raise BadRow(f"label index {index} is outside 0..{len(names) - 1}")
    return names[index]


def load_splits(config: DataConfig) -> tuple[dict[str, Examples], LabelVocab]:
    """Read train/dev(/test); split train when no dev file is given; build the label vocab."""
    names = fixed_label_names(config)
    train = read_examples(config, config.train)
    vocab = LabelVocab(names) if names else LabelVocab.from_label_sets(train.label_sets)
    splits = {"train": train}
    if config.dev:
        splits["dev"] = read_examples(config, config.dev, vocab)
    else:
        splits["train"], splits["dev"] = split_examples(train, vocab, config)
    if config.max_train_rows is not None:
        splits["train"] = subsample_examples(splits["train"], vocab, config)
    if config.test:
        splits["test"] = read_examples(config, config.test, vocab)
    return splits, vocab


def subsample_examples(examples: Examples, vocab: LabelVocab, config: DataConfig) -> Examples:
    """`data.max_train_rows` rows of `examples`, label-stratified, seeded by `split_seed`;
    all of them when there are not more. Rows keep their file order."""
    limit = config.max_train_rows
    if limit is None or limit < 1:
        raise DataError(f"data.max_train_rows must be a positive integer, got {limit!r}")
    if len(examples) <= limit:
        return examples
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    y = vocab.encode(examples.label_sets)
    splitter = MultilabelStratifiedShuffleSplit(
        n_splits=1, train_size=limit, test_size=len(y) - limit, random_state=config.split_seed
    )
    kept, rest = next(splitter.split(np.zeros(len(y)), y))
    # Iterative stratification sizes the parts only approximately; make it exactly `limit`.
    rng = np.random.default_rng(config.split_seed)
    if len(kept) > limit:
        kept = rng.choice(kept, limit, replace=False)
    elif len(kept) < limit:
        kept = np.concatenate([kept, rng.choice(rest, limit - len(kept), replace=False)])
    return examples.take(np.sort(kept), f"{examples.source} ({limit} of {len(examples)} rows)")


def split_examples(
    examples: Examples, vocab: LabelVocab, config: DataConfig
) -> tuple[Examples, Examples]:
    """Seeded, label-stratified split (iterative stratification for multi-label rows)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    if not 0.0 < config.dev_fraction < 1.0:
        raise DataError(f"data.dev_fraction must be in (0, 1), got {config.dev_fraction}")
    y = vocab.encode(examples.label_sets)
    splitter = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=config.dev_fraction, random_state=config.split_seed
    )
    train_index, dev_index = next(splitter.split(np.zeros(len(y)), y))
    source = examples.source
    return (
        examples.take(np.sort(train_index), f"{source} (train part)"),
        examples.take(np.sort(dev_index), f"{source} (dev part, {config.dev_fraction:g})"),
    )
