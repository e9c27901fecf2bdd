"""Turn a table into texts, text pairs and label sets; bad rows are reported by file and row."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xtune.config_schema import DataConfig, PrepareConfig
from xtune.data.hierarchy import LabelTree, read_label_tree
from xtune.data.labels import LabelVocab
from xtune.data.preparation import TextPreparation, prepare_splits, report_summary
from xtune.data.readers import (
    DataError,
    DecodeError,
    Table,
    decode,
    has_undecodable_bytes,
    load_table,
)
from xtune.registry import ConfigError

log = logging.getLogger(__name__)

# What str() of a pandas/numpy missing value writes into a file: never a label name.
MISSING_LABEL_CELLS = ("nan", "<na>")
# Dev/test label occurrences of labels with fewer train examples than this count as rare.
RARE_IN_TRAIN = 5


@dataclass
class Examples:
    """Parallel lists for one split; `rows` are 1-based data-row numbers in `source`."""

    source: str
    texts: list[str]
    pairs: list[str] | None
    label_sets: list[list[str]]
    rows: list[int]
    skipped: list[str] = field(default_factory=list)
    # Occurrences of labels outside the label vocabulary, dropped or in skipped rows.
    dropped_labels: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)  # shown in logs and in reports
    # The `data.prepare` the texts went through, learned from train (None: used as read).
    preparation: TextPreparation | None = None

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
    """One row cannot be used; `data.bad_rows` says whether that stops the run."""

    hint = " (set data.bad_rows: skip to drop such rows and count them)"

    def skippable(self, config: DataConfig) -> bool:
        """Skipped even under `bad_rows: error` (a policy of its own says so)."""
        return False


class Undecodable(BadRow):
    """A row holds bytes that are not valid in the file's encoding (`data.encoding`)."""


class UnknownLabels(BadRow):
    """A dev/test row has labels train does not have (`data.unknown_labels`)."""

    hint = (
        " (set data.unknown_labels: ignore_labels to keep such rows without those labels, or"
        " skip_rows to drop them)"
    )

    def skippable(self, config: DataConfig) -> bool:
        return config.unknown_labels == "skip_rows"


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
    text = decode(path, path.read_bytes(), config.encoding, "strict")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_examples(config: DataConfig, path: str, vocab: LabelVocab | None = None) -> Examples:
    """Read one split. Labels outside `vocab` (when given) follow `data.unknown_labels`."""
    file = resolve_path(config, path)
    check_label_settings(config)
    table = read_data_table(config, file)
    frame = table.frame
    if frame.empty and table.skipped:
        raise no_usable_rows(file, table.skipped)
    if frame.empty:
        header_only = " (only a header)" if len(frame.columns) else ""
        raise DataError(f"{file}: no data rows{header_only}")
    check_columns(config, frame, file)
    names = fixed_label_names(config)
    tree = label_tree(config)
    texts, pairs, label_sets, rows = [], [], [], []
    skipped, dropped = list(table.skipped), Counter()
    lines = table.lines or table.rows
    for row, line, record in zip(table.rows, lines, frame.to_dict("records"), strict=True):
        try:
            text = row_text(record[config.text], "text", config.text)
            pair = (
                row_text(record[config.text_pair], "text_pair", config.text_pair)
                if config.text_pair
                else None
            )
            labels = parse_labels(config, record, names)
            if tree is not None:
                labels = tree_labels(labels, tree)
            if vocab is not None:
                labels = known_labels(labels, vocab, config.unknown_labels, dropped)
        except BadRow as error:
            where = f" (line {line})" if isinstance(error, Undecodable) and line != row else ""
            encoding = f" {config.encoding.upper()}" if isinstance(error, Undecodable) else ""
            message = f"{file}: row {row}: {error}{encoding}{where}"
            if config.bad_rows == "error" and not error.skippable(config):
                raise DataError(message + error.hint) from None
            skipped.append(message)
            continue
        texts.append(text)
        pairs.append(pair)
        label_sets.append(labels)
        rows.append(row)
    if skipped:
        log.warning("%s: skipped %d bad row(s); first: %s", file, len(skipped), skipped[0])
    if not texts:
        raise no_usable_rows(file, skipped)
    log_duplicates(file, texts, pairs, label_sets)
    return Examples(
        source=str(file),
        texts=texts,
        pairs=pairs if config.text_pair else None,
        label_sets=label_sets,
        rows=rows,
        skipped=skipped,
        dropped_labels=dropped,
        warnings=unknown_label_notes(file, dropped, config.unknown_labels),
    )


def no_usable_rows(file: Path, skipped: list[str]) -> DataError:
    first = f" ({len(skipped)} skipped; first: {skipped[0]})" if skipped else ""
    return DataError(f"{file}: no usable rows{first}")


def read_data_table(config: DataConfig, file: Path) -> Table:
    """The file's table; with `bad_rows: skip`, undecodable bytes are marked where decoding
    fails (`encoding_errors="mark"`) so that only the rows holding them are skipped (by
    `row_text`); a file's own U+FFFD characters are text like any other."""
    settings = {"encoding": config.encoding, "sheet": config.sheet, "bad_rows": config.bad_rows}
    try:
        return load_table(file, config.format, config.columns, **settings)
    except DecodeError:
        if config.bad_rows != "skip":
            raise
    return load_table(file, config.format, config.columns, encoding_errors="mark", **settings)


def check_label_settings(config: DataConfig) -> None:
    if config.label_format in ("delimited", "list") and not config.labels:
        raise ConfigError(
            f"data.labels is not set: name the label column (data.label_format: "
            f"{config.label_format})"
        )
    if config.label_format == "delimited" and not config.label_separator:
        raise ConfigError(
            'data.label_separator is empty; set the text between labels in a cell, e.g. "|"'
        )


def known_labels(
    labels: list[str], vocab: LabelVocab, policy: str, dropped: Counter[str]
) -> list[str]:
    """`labels` without those outside `vocab`, by `data.unknown_labels`; counts the dropped."""
    unknown = [label for label in labels if label not in vocab]
    if not unknown:
        return labels
    dropped.update(unknown)
    if policy == "ignore_labels":
        return [label for label in labels if label in vocab]
    raise UnknownLabels(
        f"label(s) {', '.join(map(repr, unknown))} not in the label vocabulary (train's labels)"
    )


def unknown_label_notes(file: Path, dropped: Counter[str], policy: str) -> list[str]:
    if not dropped or policy == "error":
        return []
    shown = ", ".join(f"{label!r} ({count})" for label, count in dropped.most_common(5))
    more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
    action = "dropped from their rows" if policy == "ignore_labels" else "their rows skipped"
    message = (
        f"{file}: {sum(dropped.values())} occurrence(s) of {len(dropped)} label(s) not in train, "
        f"{action} (data.unknown_labels: {policy}): {shown}{more}"
    )
    log.warning("warning: %s", message)
    return [message]


def log_duplicates(
    file: Path, texts: list[str], pairs: list[str | None], label_sets: list[list[str]]
) -> None:
    distinct = len(set(zip(texts, pairs, map(tuple, label_sets), strict=True)))
    if distinct < len(texts):
        log.info("%s: %d duplicated row(s) (same text and labels)", file, len(texts) - distinct)


def check_columns(config: DataConfig, frame: pd.DataFrame, file: Path) -> None:
    needed = {"data.text": config.text}
    if config.text_pair:
        needed["data.text_pair"] = config.text_pair
    if config.label_format in ("columns", "levels"):
        if not config.label_columns:
            raise DataError(
                f"{file}: data.label_format is {config.label_format!r} but data.label_columns "
                "is empty"
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


def row_text(value: Any, what: str, column: str | None = None) -> str:
    """A row's text, stripped; a bad row when it is empty, not text, or holds bytes that did
    not decode (read with `encoding_errors="mark"`)."""
    if isinstance(value, dict | list):
        where = f" (column {column!r})" if column else ""
        kind = "an object" if isinstance(value, dict) else "a list"
        raise BadRow(f"{what}{where} holds {kind} where text is expected")
    if is_missing(value):
        value = ""
    text = str(value).strip()
    if not text:
        raise BadRow(f"empty {what}")
    if has_undecodable_bytes(text):
        raise Undecodable(f"{what} has bytes that are not valid")
    return text


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def label_tree(config: DataConfig) -> LabelTree | None:
    """The tree of `data.label_hierarchy`, read once per file and separator."""
    if not config.label_hierarchy:
        return None
    path = resolve_path(config, config.label_hierarchy)
    stamp = path.stat().st_mtime_ns if path.is_file() else None
    key = (str(path), stamp, config.label_path_separator, config.encoding)
    if key not in LABEL_TREES:
        LABEL_TREES[key] = read_label_tree(path, config.label_path_separator, config.encoding)
    return LABEL_TREES[key]


LABEL_TREES: dict[tuple[Any, ...], LabelTree] = {}


def tree_labels(labels: list[str], tree: LabelTree) -> list[str]:
    """Each label as its full path in `tree`; a bad row for a label the tree contradicts or
    lacks."""
    try:
        return list(dict.fromkeys(tree.resolve(label) for label in labels))
    except ValueError as error:
        raise BadRow(f"{error} ({tree.source})") from None


def level_path(config: DataConfig, record: dict[str, Any]) -> list[str]:
    """`label_format: levels`: one path from the level columns, root first; empty trailing
    cells end it early."""
    cells = [
        "" if is_missing(record[c]) else str(record[c]).strip() for c in config.label_columns or []
    ]
    while cells and not cells[-1]:
        cells.pop()
    if any(not cell for cell in cells):
        raise BadRow(f"an empty level column before a filled one ({' | '.join(cells)})")
    return [config.label_path_separator.join(cells)] if cells else []


def parse_labels(config: DataConfig, record: dict[str, Any], names: list[str] | None) -> list[str]:
    """A row's label names; an empty or NaN cell is no labels (single-label losses refuse it)."""
    if config.label_format == "levels":
        return level_path(config, record)
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
    if isinstance(cell, dict):
        raise BadRow(f"labels (column {config.labels!r}) hold an object; expected label names")
    if isinstance(cell, list):  # a JSON list needs no separator, whatever label_format says
        items = cell
    elif config.label_format == "list":
        items = parse_list_cell(cell)
    else:
        items = [] if is_missing(cell) else str(cell).split(config.label_separator)
    labels = [label_text(item, config.labels) for item in items]
    labels = [label for label in labels if label and label.lower() not in MISSING_LABEL_CELLS]
    if config.labels_are_indices:
        labels = [index_to_name(label, names) for label in labels]
    elif names is not None:
        unknown = [label for label in labels if label not in names]
        if unknown:
            raise BadRow(f"label(s) {', '.join(map(repr, unknown))} not in data.label_names")
    return list(dict.fromkeys(labels))  # drop repeats, keep order


def label_text(item: Any, column: str) -> str:
    if isinstance(item, dict | list):
        raise BadRow(f"labels (column {column!r}) hold a nested {type(item).__name__}")
    text = "" if is_missing(item) else str(item).strip()
    if has_undecodable_bytes(text):  # read with bad_rows: skip; never let it become a class
        raise Undecodable(f"labels (column {column!r}) have bytes that are not valid")
    return text


def parse_list_cell(cell: Any) -> list[Any]:
    if is_missing(cell) or str(cell).strip() == "":
        return []
    text = str(cell)
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
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
    """Read train/dev(/test); split train when no dev file is given; build the label vocab.

    Notes a user should see (a plain split, unseen or rare dev/test labels) are logged and
    kept in each split's `warnings`.
    """
    names = fixed_label_names(config)
    train = read_examples(config, config.train)
    vocab = label_vocabulary(train, names)
    splits = {"train": train}
    if config.dev:
        splits["dev"] = read_examples(config, config.dev, vocab)
    else:
        splits["train"], splits["dev"] = split_examples(train, vocab, config)
    if config.max_train_rows is not None:
        splits["train"] = subsample_examples(splits["train"], vocab, config)
    if config.test:
        splits["test"] = read_examples(config, config.test, vocab)
    if config.prepare.enabled():
        splits, _ = prepare_examples(splits, config.prepare)
    note_one_label_set(splits["train"])
    note_near_duplicate_labels(splits["train"])
    for name in ("dev", "test"):
        if name in splits:
            note_unseen_or_rare_labels(name, splits[name], splits["train"])
    return splits, vocab


def prepare_examples(
    splits: dict[str, Examples], config: PrepareConfig
) -> tuple[dict[str, Examples], np.ndarray]:
    """Every split's texts through `data.prepare` (`xtune.data.preparation.prepare_splits`:
    learned from train, duplicated train rows dropped when asked), each carrying the
    preparation; the indices of the train rows kept. Prints the preparation's summary; rows of
    dev/test that repeat a train row are noted in their split's warnings."""
    prepared = prepare_splits(
        splits, config, {name: split.source for name, split in splits.items()}
    )
    train = splits["train"]
    print(f"xtune: text preparation of {train.source}:", flush=True)
    for line in report_summary(prepared.preparation.report):
        print(f"xtune:   {line}", flush=True)
    result = {}
    for name, split in splits.items():
        if name == "train":
            kept = prepared.train_kept
            split = dataclasses.replace(
                split,
                label_sets=[split.label_sets[i] for i in kept],
                rows=[split.rows[i] for i in kept],
            )
        result[name] = dataclasses.replace(
            split,
            texts=prepared.texts[name],
            pairs=prepared.pairs[name],
            preparation=prepared.preparation,
        )
    for name, messages in prepared.notes.items():
        for message in messages:
            note(result[name], message)
    return result, prepared.train_kept


def label_vocabulary(train: Examples, names: list[str] | None) -> LabelVocab:
    if names is not None:
        try:
            vocab = LabelVocab(names)
        except ValueError as error:
            raise DataError(f"data.label_names: {error}") from None
    elif not any(train.label_sets):
        raise DataError(
            f"{train.source}: no row has a label (every label cell is empty); check data.labels "
            f"and data.label_separator"
        )
    else:
        vocab = LabelVocab.from_label_sets(train.label_sets)
    if len(vocab) == 1:  # the metrics and the decision rules are defined for 2+ labels
        raise DataError(
            f"{train.source}: one label only ({vocab.names[0]!r}); a classifier needs at least "
            f"two (for a yes/no task, give the other rows a label too, e.g. "
            f"'not_{vocab.names[0]}')"
        )
    return vocab


def note(examples: Examples, message: str) -> None:
    log.warning("warning: %s", message)
    examples.warnings.append(message)


def note_one_label_set(train: Examples) -> None:
    distinct = {tuple(sorted(labels)) for labels in train.label_sets}
    if len(distinct) == 1 and len(train) > 1:
        shown = "|".join(next(iter(distinct))) or "no labels"
        note(
            train,
            f"{train.source}: every train row has the same labels ({shown}); the model can "
            f"only learn to predict them",
        )


def note_near_duplicate_labels(train: Examples) -> None:
    """Labels that differ only by case or full-/half-width form (`Road`, `road`, `ＲＯＡＤ`)
    are separate classes; usually a typo in the data: say so, with each one's row count."""
    counts = Counter(label for labels in train.label_sets for label in labels)
    groups: dict[str, list[str]] = {}
    for label in sorted(counts):
        groups.setdefault(unicodedata.normalize("NFKC", label).casefold(), []).append(label)
    for names in groups.values():
        if len(names) > 1:
            shown = ", ".join(f"{name!r} ({counts[name]} rows)" for name in names)
            note(
                train,
                f"{train.source}: labels {shown} differ only by case or character width and "
                "are separate classes; if they are one label, make them the same in the data",
            )


def note_unseen_or_rare_labels(name: str, split: Examples, train: Examples) -> None:
    """Warn when most of a split's label occurrences are of labels train barely has."""
    in_train = Counter(label for labels in train.label_sets for label in labels)
    counts = Counter(label for labels in split.label_sets for label in labels)
    counts.update(split.dropped_labels)
    total = sum(counts.values())
    unseen = sum(n for label, n in counts.items() if in_train[label] == 0)
    rare = sum(n for label, n in counts.items() if 0 < in_train[label] < RARE_IN_TRAIN)
    if total and unseen + rare > total / 2:
        note(
            split,
            f"{name} ({split.source}): {unseen + rare} of {total} label occurrences "
            f"({(unseen + rare) / total:.0%}) are of labels unseen in train ({unseen}) or rare "
            f"there (fewer than {RARE_IN_TRAIN} train examples: {rare}); {name} metrics say "
            f"little about those labels",
        )


def subsample_examples(examples: Examples, vocab: LabelVocab, config: DataConfig) -> Examples:
    """`data.max_train_rows` rows of `examples`, label-stratified, seeded by `split_seed`;
    all of them when there are not more. Rows keep their file order."""
    limit = config.max_train_rows
    if limit is None or limit < 1:
        raise DataError(f"data.max_train_rows must be a positive integer, got {limit!r}")
    if len(examples) <= limit:
        return examples
    source = f"{examples.source} ({limit} of {len(examples)} rows)"
    y = vocab.encode(examples.label_sets)
    kept, rest = seeded_split(y, len(y) - limit, config.split_seed, examples, source)
    # Iterative stratification sizes the parts only approximately; make it exactly `limit`.
    rng = np.random.default_rng(config.split_seed)
    if len(kept) > limit:
        kept = rng.choice(kept, limit, replace=False)
    elif len(kept) < limit:
        kept = np.concatenate([kept, rng.choice(rest, limit - len(kept), replace=False)])
    part = examples.take(np.sort(kept), source)
    part.warnings = examples.warnings
    return part


def split_examples(
    examples: Examples, vocab: LabelVocab, config: DataConfig
) -> tuple[Examples, Examples]:
    """Seeded, label-stratified split (iterative stratification for multi-label rows)."""
    if not 0.0 < config.dev_fraction < 1.0:
        raise DataError(f"data.dev_fraction must be in (0, 1), got {config.dev_fraction}")
    size = len(examples)
    dev_size = math.ceil(config.dev_fraction * size)  # as scikit-learn sizes a test part
    if dev_size >= size:
        raise DataError(
            f"{examples.source}: {size} usable row(s) cannot be split into train and dev "
            f"(data.dev_fraction {config.dev_fraction:g}); add rows or give a data.dev file"
        )
    y = vocab.encode(examples.label_sets)
    source = examples.source
    train_index, dev_index = seeded_split(
        y, dev_size, config.split_seed, examples, f"{source} (split into train and dev)"
    )
    train = examples.take(np.sort(train_index), f"{source} (train part)")
    train.warnings = examples.warnings
    return train, examples.take(np.sort(dev_index), f"{source} (dev part, {config.dev_fraction:g})")


def seeded_split(
    y: np.ndarray, second_size: int, seed: int, examples: Examples, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of two parts, the second `second_size` rows: iterative stratification by
    label when the labels allow it, else a plain seeded shuffle (noted in the log)."""
    size = len(y)
    if y.shape[1] >= 2:  # iterstrat needs a multi-label indicator matrix (2+ label columns)
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        splitter = MultilabelStratifiedShuffleSplit(
            n_splits=1, train_size=size - second_size, test_size=second_size, random_state=seed
        )
        try:
            first, second = next(splitter.split(np.zeros(size), y))
        except ValueError as error:
            first, second, reason = [], [], str(error)
        else:
            reason = "an empty part for so few rows"
        if len(first) and len(second):  # tiny sets can come back with one part empty
            return first, second
    else:
        reason = "one label only"
    note(examples, f"{what}: cannot stratify by label ({reason}); used a plain seeded split")
    order = np.random.default_rng(seed).permutation(size)
    return order[: size - second_size], order[size - second_size :]
