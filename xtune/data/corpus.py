"""Unlabeled text for masked-LM training: documents from one or more files and columns.

A document is one row: the texts of its `columns` joined by a line break (empty cells left
out; a row with none is skipped and counted). Train reads `data.train` and every entry of
`tasks.NAME.mlm.files` (a path, or a mapping with the file's own columns and format); the
held-out `dev` split is `data.dev` or, without one, part of `data.train`'s documents: a seeded
`data.dev_fraction` of them, or (`mlm.dev_split: labels`) exactly the rows a classification
task with the same data keys holds out as dev. `test` is `data.test` when given. With
`data.prepare`, `prepare_corpus` cleans every split's documents as it cleans labelled rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from xtune.config_schema import DataConfig, MaskedLMConfig, PrepareConfig
from xtune.data.examples import is_missing, read_data_table, resolve_path
from xtune.data.preparation import TextPreparation, prepare_splits, report_summary
from xtune.data.readers import DataError


@dataclass
class Corpus:
    """One split's documents and where they came from (`sources`: file -> documents read,
    rows skipped for want of text); `rows` are the documents' 1-based data-row numbers when
    they come from one file."""

    documents: list[str]
    sources: dict[str, dict[str, int]]
    rows: list[int] | None = None

    def __len__(self) -> int:
        return len(self.documents)


FILE_KEYS = ("path", "columns", "format", "header")


def read_documents(config: DataConfig, path: str, columns: list[str], key: str) -> Corpus:
    """One file's documents; a column missing from the file is a `DataError` naming the file,
    the column and the config key (`key`) that asked for it."""
    file = resolve_path(config, path)
    table = read_data_table(config, file)
    missing = [column for column in columns if column not in table.frame.columns]
    if missing:
        raise DataError(
            f"{file}: column {missing[0]!r} (from {key}) not found; the file has columns: "
            f"{', '.join(map(str, table.frame.columns))}"
        )
    documents, rows, empty = [], [], 0
    for row, record in zip(table.rows, table.frame[columns].to_dict("records"), strict=True):
        texts = [cell_text(record[column]) for column in columns]
        text = "\n".join(text for text in texts if text)
        if text:
            documents.append(text)
            rows.append(row)
        else:
            empty += 1
    if not documents:
        raise DataError(f"{file}: no text in column(s) {', '.join(columns)} (from {key})")
    return Corpus(documents, {str(file): {"documents": len(documents), "empty_rows": empty}}, rows)


def read_extra_file(
    config: DataConfig, entry: str | dict[str, Any], columns: list[str], key: str
) -> Corpus:
    """One `mlm.files` entry: a path read like data.train, or a mapping of `FILE_KEYS` for a
    file of another shape (its own text columns, format and header-less column names)."""
    if isinstance(entry, str):
        return read_documents(config, entry, columns, f"{key}.columns")
    unknown = sorted(set(entry) - set(FILE_KEYS))
    if unknown or not isinstance(entry.get("path"), str):
        problem = f"unknown key {unknown[0]!r}" if unknown else "no 'path' (a file name)"
        raise DataError(f"{key}: {problem}; an entry is a path or a mapping of {FILE_KEYS}")
    own = entry.get("columns") or columns
    if not isinstance(own, list) or not all(isinstance(column, str) for column in own):
        raise DataError(f"{key}.columns: expected a list of column names, got {own!r}")
    settings = {"format": entry.get("format", "auto"), "columns": entry.get("header")}
    return read_documents(replace(config, **settings), entry["path"], own, f"{key}.columns")


def cell_text(value: Any) -> str:
    """A cell as text, stripped; a missing value or a JSON object or list is no text."""
    if is_missing(value) or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def read_corpus_splits(config: DataConfig, mlm: MaskedLMConfig, key: str) -> dict[str, Corpus]:
    """train (`data.train` and `mlm.files`), dev and, when given, test (see the module
    docstring); `key` names the task's config section in errors (`tasks.NAME.mlm`)."""
    columns = mlm.columns or [config.text] + ([config.text_pair] if config.text_pair else [])
    where = f"{key}.columns" if mlm.columns else "data.text"
    first = read_documents(config, config.train, columns, where)
    splits = {"train": first}
    if config.dev:
        splits["dev"] = read_documents(config, config.dev, columns, where)
    else:
        if mlm.dev_split == "labels":
            train, dev = held_out_like_labels(first, config, key)
        else:
            train, dev = held_out(first, config.dev_fraction, config.split_seed)
        source, counts = next(iter(first.sources.items()))
        train.sources = {source: {**counts, "documents": len(train), "held_out": len(dev)}}
        splits["train"], splits["dev"] = train, dev
    extra = [
        read_extra_file(config, entry, columns, f"{key}.files[{index}]")
        for index, entry in enumerate(mlm.files)
    ]
    splits["train"] = joined([splits["train"], *extra])
    if config.max_train_rows is not None and len(splits["train"]) > config.max_train_rows:
        splits["train"] = subset(splits["train"], config.max_train_rows, config.split_seed)
    if config.test:
        splits["test"] = read_documents(config, config.test, columns, where)
    return splits


def joined(parts: list[Corpus]) -> Corpus:
    if len(parts) == 1:
        return parts[0]
    return Corpus(
        [document for part in parts for document in part.documents],
        {source: count for part in parts for source, count in part.sources.items()},
    )


def held_out_like_labels(corpus: Corpus, config: DataConfig, key: str) -> tuple[Corpus, Corpus]:
    """data.train's documents split as a classification task with the same data keys splits
    its rows (`xtune.data.examples.split_examples`): dev holds exactly its dev rows' texts."""
    from xtune.data.examples import (
        fixed_label_names,
        label_vocabulary,
        read_examples,
        split_examples,
    )

    try:
        labelled = read_examples(config, config.train)
    except DataError as error:
        raise DataError(f"{key}.dev_split: labels: reading data.train's labels: {error}") from None
    vocab = label_vocabulary(labelled, fixed_label_names(config))
    dev_rows = set(split_examples(labelled, vocab, config)[1].rows)
    rows = corpus.rows or []
    held = [i for i, row in enumerate(rows) if row in dev_rows]
    kept = [i for i, row in enumerate(rows) if row not in dev_rows]

    def part(indices: list[int], sources: dict[str, dict[str, int]]) -> Corpus:
        return Corpus([corpus.documents[i] for i in indices], sources, [rows[i] for i in indices])

    dev_source = {"dev rows of the labelled split": {"documents": len(held)}}
    return part(kept, corpus.sources), part(held, dev_source)


def held_out(corpus: Corpus, fraction: float, seed: int) -> tuple[Corpus, Corpus]:
    """A seeded `fraction` of the documents (at least one) as dev, the rest as train."""
    size = len(corpus)
    dev_size = math.ceil(fraction * size)
    if dev_size >= size:
        raise DataError(
            f"{', '.join(corpus.sources)}: {size} document(s) cannot be split into train and "
            f"dev (data.dev_fraction {fraction:g}); add text or give a data.dev file"
        )
    order = np.random.default_rng(seed).permutation(size)
    dev, train = np.sort(order[:dev_size]), np.sort(order[dev_size:])
    return (
        Corpus([corpus.documents[i] for i in train], corpus.sources),
        Corpus([corpus.documents[i] for i in dev], {"held out of train": {"documents": dev_size}}),
    )


def subset(corpus: Corpus, size: int, seed: int) -> Corpus:
    """`data.max_train_rows` documents, seeded, in their order."""
    kept = np.sort(np.random.default_rng(seed).choice(len(corpus), size, replace=False))
    return Corpus([corpus.documents[i] for i in kept], corpus.sources)


def prepare_corpus(
    splits: dict[str, Corpus], config: PrepareConfig
) -> tuple[dict[str, Corpus], TextPreparation]:
    """Every split's documents through `data.prepare` (learned from train's documents, as
    `xtune.data.preparation.prepare_splits` does for labelled rows); documents it leaves
    empty are dropped. Prints the preparation's summary."""
    rows = {
        name: SimpleNamespace(texts=split.documents, pairs=None, rows=range(1, len(split) + 1))
        for name, split in splits.items()
    }
    sources = {name: ", ".join(split.sources) for name, split in splits.items()}
    prepared = prepare_splits(rows, config, sources)
    print(f"xtune: text preparation of {sources['train']}:", flush=True)
    for line in report_summary(prepared.preparation.report):
        print(f"xtune:   {line}", flush=True)
    cleaned = {
        name: Corpus([text for text in prepared.texts[name] if text], split.sources)
        for name, split in splits.items()
    }
    return cleaned, prepared.preparation
