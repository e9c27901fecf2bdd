"""An encoder's limits (positions, layers), read from its config files without loading weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# keras-hub's BertBackbone defaults, which `random` also uses.
RANDOM_DEFAULTS = {"max_sequence_length": 512, "num_layers": 2}
# all-MiniLM-L6-v2's config.json: max_position_embeddings 512, num_hidden_layers 6.
PACKAGED = {"minilm-l6": {"positions": 512, "layers": 6}}
# Hugging Face families whose position ids start after the padding id (`padding_idx + 1`).
OFFSET_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert")


def max_positions(encoder_spec: dict[str, Any]) -> int | None:
    """The longest input the encoder's position embeddings allow (`data.max_length` <= it).

    Reads `config.json` (`hf`: `max_position_embeddings`, minus RoBERTa's padding offset;
    `preset`: keras-hub's `config.max_sequence_length`) or `bert_config.json` (`tf1`);
    `random` takes its `max_sequence_length` argument (default 512). None when it cannot be
    told (an unknown encoder, a missing or unreadable file): loading the encoder reports those.
    """
    name = encoder_spec.get("name")
    if name in PACKAGED:
        return PACKAGED[name]["positions"]
    if name == "random":
        return count(
            encoder_spec.get("max_sequence_length", RANDOM_DEFAULTS["max_sequence_length"])
        )
    if name == "hf":
        config = read_json(folder_of(encoder_spec), "config.json")
        positions = count(config.get("max_position_embeddings"))
        if positions is not None and config.get("model_type") in OFFSET_POSITION_TYPES:
            pad = config.get("pad_token_id", 1)
            return count(positions - pad - 1) if count(pad) else None
        return positions
    if name == "tf1":
        return count(
            read_json(folder_of(encoder_spec), "bert_config.json").get("max_position_embeddings")
        )
    if name == "preset":
        config = read_json(folder_of(encoder_spec), "config.json").get("config")
        return count(config.get("max_sequence_length")) if isinstance(config, dict) else None
    return None


def num_layers(encoder_spec: dict[str, Any]) -> int | None:
    """The encoder's transformer layers (for `last_layers`, `train_top_layers`), or None."""
    name = encoder_spec.get("name")
    if name in PACKAGED:
        return PACKAGED[name]["layers"]
    if name == "random":
        return count(encoder_spec.get("num_layers", RANDOM_DEFAULTS["num_layers"]))
    if name == "hf":
        config = read_json(folder_of(encoder_spec), "config.json")
        return count(config.get("num_hidden_layers", config.get("n_layers")))
    if name == "tf1":
        return count(
            read_json(folder_of(encoder_spec), "bert_config.json").get("num_hidden_layers")
        )
    if name == "preset":
        config = read_json(folder_of(encoder_spec), "config.json").get("config")
        return count(config.get("num_layers")) if isinstance(config, dict) else None
    return None


def folder_of(encoder_spec: dict[str, Any]) -> Path | None:
    path = encoder_spec.get("path")
    return Path(path).expanduser() if isinstance(path, str) else None


def read_json(folder: Path | None, name: str) -> dict[str, Any]:
    """A JSON object file of the folder, or {} when it is missing or not a JSON object."""
    if folder is None:
        return {}
    try:
        value = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def count(value: Any) -> int | None:
    """A positive integer, or None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None
