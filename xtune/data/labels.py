"""`LabelVocab`: label names <-> indices and multi-hot vectors, saved as labels.json."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


class LabelVocab:
    """An ordered list of label names.

    ```python
    vocab = LabelVocab(["noise", "traffic", "housing"])
    vocab.encode([["traffic"], ["noise", "housing"]])
    # -> [[0, 1, 0], [1, 0, 1]]
    ```
    """

    def __init__(self, names: Sequence[str]):
        names = [str(n) for n in names]
        if len(set(names)) != len(names):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate label names: {', '.join(duplicates)}")
        if not names:
            raise ValueError("a label vocabulary needs at least one label")
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocab) and other.names == self.names

    @classmethod
    def from_label_sets(cls, label_sets: Iterable[Sequence[str]]) -> LabelVocab:
        """Labels sorted by frequency (most frequent first), ties by name: stable across runs."""
        counts: dict[str, int] = {}
        for labels in label_sets:
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
        return cls(sorted(counts, key=lambda n: (-counts[n], n)))

    def encode(self, label_sets: Sequence[Sequence[str]]) -> np.ndarray:
        multi_hot = np.zeros((len(label_sets), len(self)), dtype=np.float32)
        for row, labels in enumerate(label_sets):
            for label in labels:
                multi_hot[row, self.index[label]] = 1.0
        return multi_hot

    def decode(self, multi_hot: np.ndarray) -> list[list[str]]:
        return [[self.names[i] for i in np.flatnonzero(row)] for row in np.asarray(multi_hot)]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps({"labels": self.names}, ensure_ascii=False, indent=1), encoding="utf-8"
        )

    @classmethod
    def load(cls, path: str | Path) -> LabelVocab:
        path = Path(path)
        try:
            return cls(json.loads(path.read_text(encoding="utf-8"))["labels"])
        except (OSError, KeyError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a labels.json written by xtune ({error})") from None
