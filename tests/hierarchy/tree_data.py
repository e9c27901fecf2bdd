"""A tiny three-level label tree and rows labelled with its paths (a signal character per
path, so a one-epoch tiny model can learn some of it), written as train/dev CSVs and a tree
file for the hierarchy tests."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

PATHS = ["交通/道路/拥堵", "交通/港口", "环境/噪音", "环境/空气/燃烧", "教育"]
SIGNALS = {"拥堵": "路", "港口": "港", "噪音": "吵", "燃烧": "燃", "教育": "学"}
CHARACTERS = "一中买了二于享京今他价你全写分北发句在型好子年度我文无是更机格"


def rows(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        path = rng.choice(PATHS)
        text = "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(4, 12)))
        signal = SIGNALS[path.rsplit("/", 1)[-1]]
        if rng.random() < 0.2:  # a row labelled only to its first level
            path = path.split("/")[0]
        out.append({"text": signal + text, "labels": path})
    return out


def write_tree_files(folder: Path) -> dict[str, str]:
    """train.csv (48 rows), dev.csv (16) and tree.txt in `folder`; their `data:` keys."""
    pd.DataFrame(rows(48, 0)).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(rows(16, 1)).to_csv(folder / "dev.csv", index=False)
    (folder / "tree.txt").write_text("\n".join(PATHS) + "\n", encoding="utf-8")
    return {
        "train": str(folder / "train.csv"),
        "dev": str(folder / "dev.csv"),
        "label_hierarchy": str(folder / "tree.txt"),
    }
