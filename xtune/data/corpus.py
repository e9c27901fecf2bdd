"""Unlabeled text for masked-LM training: documents from one or more files and columns.

A document is one row: the texts of its `columns` joined by a line break (empty cells left
out; a row with none is skipped and counted). Train reads `data.train` and every file of
`tasks.NAME.mlm.files`; the held-out `dev` split is `data.dev` or, without one, a seeded
`data.dev_fraction` of train's documents; `test` is `data.test` when given. With
`data.prepare`, `prepare_corpus` cleans every split's documents as it cleans labelled rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from xtune.config_schema import DataConfig, PrepareConfig
from xtune.data.examples import is_missing, read_data_table, resolve_path
from xtune.data.preparation import TextPreparation, prepare_splits, report_summary
from xtune.data.readers import DataError


@dataclass
class Corpus:
    """One split's documents and where they came from (`sources`: file -> documents read,
    rows skipped for want of text)."""

    documents: list[str]
    sources: dict[str, dict[str, int]]

    def __len__(self) -> int:
        return len(self.documents)


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
    documents, empty = [], 0
    for record in table.frame[columns].to_dict("records"):
        texts = [cell_text(record[column]) for column in columns]
        text = "\n".join(text for text in texts if text)
        if text:
            documents.append(text)
        else:
            empty += 1
    if not documents:
        raise DataError(f"{file}: no text in column(s) {', '.join(columns)} (from {key})")
    return Corpus(documents, {str(file): {"documents": len(documents), "empty_rows": empty}})


def cell_text(value: Any) -> str:
    """A cell as text, stripped; a missing value or a JSON object or list is no text."""
    if is_missing(value) or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def read_corpus_splits(
    config: DataConfig, files: list[str], columns: list[str], key: str
) -> dict[str, Corpus]:
    """train (`data.train` and `files`), dev and, when given, test (see the module
    docstring); `key` names the task's config section in errors (`tasks.NAME.mlm`)."""
    where = f"{key}.columns" if columns else "data.text"
    if not columns:
        columns = [config.text] + ([config.text_pair] if config.text_pair else [])
    parts = [read_documents(config, path, columns, where) for path in [config.train, *files]]
    train = Corpus(
        [document for part in parts for document in part.documents],
        {source: count for part in parts for source, count in part.sources.items()},
    )
    splits = {"train": train}
    if config.dev:
        splits["dev"] = read_documents(config, config.dev, columns, where)
    else:
        splits["train"], splits["dev"] = held_out(train, config.dev_fraction, config.split_seed)
    if config.max_train_rows is not None and len(splits["train"]) > config.max_train_rows:
        splits["train"] = subset(splits["train"], config.max_train_rows, config.split_seed)
    if config.test:
        splits["test"] = read_documents(config, config.test, columns, where)
    return splits


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
