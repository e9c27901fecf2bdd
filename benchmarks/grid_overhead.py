"""What a grid saves by reading and tokenizing its data once instead of once per run.

For the first run config of a grid file, times:
  1. loading the encoder to learn its tokenizer (the grid does this once per encoder),
  2. `prepare_data` with no token cache (read + tokenize: what every run paid without reuse),
  3. `prepare_data` with a warm on-disk token cache (`data.cache_dir`: what a plain
     `xtune train` of the same data pays from its second run on),
  4. the grid's in-memory reuse (`PreparedDataCache.get` after the first run),
and prints the seconds the grid saves over its runs against (2) and (3).

    .venv/bin/python benchmarks/grid_overhead.py [experiments/demo.yaml] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median seconds of `repeats` calls, and every timing."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid_file", nargs="?", default="experiments/demo.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from xtune.encoders import load_encoder
    from xtune.grid.prepared_data_cache import PreparedDataCache
    from xtune.grid.spec import load_grid
    from xtune.training.trainer import prepare_data

    spec = load_grid(args.grid_file, args.overrides)
    config = spec.runs[0].config
    keys = PreparedDataCache()
    data_keys = {keys.data_key(run.config, keys.tokenizer_of(run.config)) for run in spec.runs}
    print(f"grid {spec.name}: {len(spec.runs)} runs, {len(data_keys)} data setting(s)")
    print(
        f"data: {config.data.root}/{config.data.train} (+ dev/test), max_length "
        f"{config.data.max_length}, encoder {config.encoder.name}"
    )

    load_seconds, _ = timed(lambda: load_encoder(config.encoder), args.repeats)
    encoder = load_encoder(config.encoder)
    no_cache = dataclasses.replace(config, data=dataclasses.replace(config.data, cache_dir=None))
    cold, cold_all = timed(lambda: prepare_data(no_cache, encoder), args.repeats)
    with tempfile.TemporaryDirectory() as cache_dir:
        disk = dataclasses.replace(
            config, data=dataclasses.replace(config.data, cache_dir=cache_dir)
        )
        prepare_data(disk, encoder)  # fills the cache
        warm, warm_all = timed(lambda: prepare_data(disk, encoder), args.repeats)
    cache = PreparedDataCache()
    cache.get(no_cache)
    reuse, _ = timed(lambda: cache.get(no_cache), args.repeats)

    others = len(spec.runs) - len(data_keys)
    print(f"  encoder load for its tokenizer (once per encoder):   {load_seconds:7.2f} s")
    print(
        f"  prepare_data, no token cache (read + tokenize):      {cold:7.2f} s  "
        f"({', '.join(f'{s:.2f}' for s in cold_all)})"
    )
    print(
        f"  prepare_data, warm on-disk token cache:              {warm:7.2f} s  "
        f"({', '.join(f'{s:.2f}' for s in warm_all)})"
    )
    print(f"  grid reuse of prepared data (in memory):             {reuse:7.4f} s")
    print(
        f"saved over the grid's other {others} runs: {others * (cold - reuse):.1f} s against "
        f"tokenizing every run, {others * (warm - reuse):.1f} s against the disk cache alone"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
