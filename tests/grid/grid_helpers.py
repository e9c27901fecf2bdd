"""Tiny data sets, a tiny random-BERT base config and grid-file helpers for the grid tests."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
TINY_VOCABULARY = REPOSITORY / "tests" / "fixtures" / "vocab_zh_small.txt"
TINY_ENCODER = {
    "name": "random",
    "vocabulary": str(TINY_VOCABULARY),
    "num_layers": 1,
    "hidden_dim": 16,
    "num_heads": 2,
    "intermediate_dim": 32,
}
# Characters that are in the tiny vocabulary; each label owns a few of them.
LABEL_CHARACTERS = {"甲": "港灣東格", "乙": "意理真空", "丙": "香露文言"}
FILLER = "年度我是更的这问题"


def write_split(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["id,text,labels"]
    for i in range(rows):
        labels = rng.sample(sorted(LABEL_CHARACTERS), rng.randint(1, 2))
        text = "".join(rng.choice(FILLER) for _ in range(6))
        text += "".join(rng.choice(LABEL_CHARACTERS[label]) * 2 for label in labels)
        lines.append(f"{i},{text},{'|'.join(labels)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_tiny_data(folder: Path) -> Path:
    """train.csv (32 rows) and dev.csv (16 rows), three labels."""
    folder.mkdir(parents=True, exist_ok=True)
    write_split(folder / "train.csv", 32, seed=1)
    write_split(folder / "dev.csv", 16, seed=2)
    return folder


def tiny_base(data_root: Path, output_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """The cheapest real training: one fixed-length shape, 1 epoch of 2 steps, no extras."""
    return {
        "data": {
            "root": str(data_root),
            "train": "train.csv",
            "dev": "dev.csv",
            "max_length": 16,
            "padding": "fixed",
            "cache_dir": None if cache_dir is None else str(cache_dir),
        },
        "encoder": dict(TINY_ENCODER),
        "head": {"name": "pooling", "pooling": "mean"},
        "optimizer": {"name": "adamw", "learning_rate": 1e-3},
        "training": {
            "epochs": 1,
            "batch_size": 16,
            "eval_batch_size": 16,
            "verbose": 0,
            "save_weights": False,
            "checkpoints": False,  # tests/reliability/test_resume.py turns them on
            "tune_thresholds": None,
            "mixed_precision": "float32",
            "jit_compile": False,
            "output_dir": str(output_dir),
        },
    }


def write_grid(path: Path, grid: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(grid, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def markdown_table(text: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under `## heading` as dicts keyed by the header cells."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")), strict=True))
        for row in rows[2:]
    ]


def read_lines(results_file: Path) -> list[dict[str, Any]]:
    """The complete lines of a results.jsonl."""
    text = results_file.read_text(encoding="utf-8")
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
