"""How many token positions an encoder has, read from its config files without loading weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# keras-hub's BertBackbone default, which `random` also uses.
DEFAULT_RANDOM_POSITIONS = 512
PACKAGED_POSITIONS = {"minilm-l6": 512}  # all-MiniLM-L6-v2's max_position_embeddings


def max_positions(encoder_spec: dict[str, Any]) -> int | None:
    """The encoder's position-embedding count, so `data.max_length` can be checked against it.

    Reads `config.json` (`hf`: `max_position_embeddings`; `preset`: keras-hub's
    `config.max_sequence_length`) or `bert_config.json` (`tf1`); `random` takes its
    `max_sequence_length` argument. None when it cannot be told (unknown encoder, missing or
    unreadable file): loading the encoder reports those.
    """
    name = encoder_spec.get("name")
    if name in PACKAGED_POSITIONS:
        return PACKAGED_POSITIONS[name]
    if name == "random":
        value = encoder_spec.get("max_sequence_length", DEFAULT_RANDOM_POSITIONS)
        return value if is_count(value) else None
    path = encoder_spec.get("path")
    if not isinstance(path, str):
        return None
    folder = Path(path).expanduser()
    if name == "hf":
        return count_in(folder / "config.json", "max_position_embeddings")
    if name == "tf1":
        return count_in(folder / "bert_config.json", "max_position_embeddings")
    if name == "preset":
        return count_in(folder / "config.json", "config", "max_sequence_length")
    return None


def count_in(file: Path, *keys: str) -> int | None:
    """`file[keys[0]][keys[1]]...` of a JSON file when it is a positive integer, else None."""
    try:
        value: Any = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if is_count(value) else None


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
