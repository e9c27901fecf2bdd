"""`PreparedDataCache`: read and tokenize each dataset once per grid, not once per run."""

from __future__ import annotations

import dataclasses
import gc
import json
import time
from dataclasses import dataclass
from typing import Any

from xtune.config import RunConfig

# Data settings that decide batching or where the token cache lives, not the token ids.
NON_TOKEN_DATA_KEYS = ("cache_dir", "padding")


@dataclass(frozen=True)
class TokenizerSettings:
    """The two fields of an encoder adapter that `prepare_data` reads."""

    tokenizer: Any
    packing: Any

    @property
    def fingerprint(self) -> str:
        packing = f"{self.packing.style}/{self.packing.segment_ids}"
        return f"{type(self.tokenizer).__name__}:{self.tokenizer.fingerprint()}:{packing}"


class PreparedDataCache:
    """`PreparedData` by (data settings, tokenizer, packing), shared by the runs of a grid.

    The tokenizer of an encoder is learned by loading that encoder once (its weights are then
    dropped); `prepare_data` also keeps its on-disk token cache (`data.cache_dir`).
    """

    def __init__(self) -> None:
        self.tokenizers: dict[str, TokenizerSettings] = {}
        self.prepared: dict[str, Any] = {}
        self.prepare_seconds: dict[str, float] = {}
        self.hits = 0

    def get(self, config: RunConfig) -> tuple[Any, float]:
        """The run's `PreparedData`, and the seconds spent preparing it now (0.0 on reuse)."""
        from xtune.encoders.encoder import fresh_tokenizer
        from xtune.training.trainer import prepare_data

        started = time.perf_counter()
        tokenizer = self.tokenizer_of(config)
        key = self.data_key(config, tokenizer)
        if key in self.prepared:
            self.hits += 1
            return self.prepared[key], 0.0
        # A fresh tokenizer: the runs' `clear_session` frees the resources of the kept one.
        tokenizer = TokenizerSettings(fresh_tokenizer(tokenizer.tokenizer), tokenizer.packing)
        self.prepared[key] = prepare_data(config, tokenizer)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        self.prepare_seconds[key] = seconds
        return self.prepared[key], seconds

    def tokenizer_of(self, config: RunConfig) -> TokenizerSettings:
        from xtune.encoders import load_encoder

        spec = json.dumps(config.encoder.to_dict(), sort_keys=True, default=str)
        if spec not in self.tokenizers:
            encoder = load_encoder(config.encoder)
            self.tokenizers[spec] = TokenizerSettings(encoder.tokenizer, encoder.packing)
            del encoder
            gc.collect()
        return self.tokenizers[spec]

    @staticmethod
    def data_key(config: RunConfig, tokenizer: TokenizerSettings) -> str:
        return json.dumps(
            {
                "data": data_settings(config),
                "targets": target_settings(config),
                "tokenizer": tokenizer.fingerprint,
            },
            sort_keys=True,
            default=str,
        )


def target_settings(config: RunConfig) -> dict[str, Any]:
    """What else decides a task's prepared targets and texts: its type, its hierarchy
    settings (a hierarchy mode adds ancestor nodes to the targets, or keeps the leaves only)
    and its own data settings (`tasks.NAME.data` may differ from the top level: its files,
    `prepare`, `max_length`, ...)."""
    return {
        name: {
            "type": task.type,
            "hierarchy": dataclasses.asdict(task.hierarchy),
            "data": token_settings(task.data),
        }
        for name, task in config.named_tasks().items()
    }


def data_settings(config: RunConfig) -> dict[str, Any]:
    """The data settings that decide what is read and tokenized (not batching or caching)."""
    return token_settings(config.data)


def token_settings(data: Any) -> dict[str, Any]:
    """A `DataConfig` as a dict (`prepare` included: it decides the texts) without the keys
    that change neither the texts nor the ids."""
    settings = dataclasses.asdict(data)
    for key in NON_TOKEN_DATA_KEYS:
        settings.pop(key)
    return settings
