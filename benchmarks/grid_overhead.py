"""A grid's fixed costs: start to first training step, per-run overhead, and data reuse.

Part 1 runs the first `--runs` runs of the grid (default the demo grid, 2 runs) in this
process, as `xtune grid` would, into a scratch folder, and prints from their result lines:
  - the time from process start to the end of the first training step (imports, grid
    planning, reading + tokenizing the data, encoder load, model build, compile, tracing),
  - each run's fixed cost: data preparation + setup (encoder load, model build, compile) +
    tracing (the first epoch's training time minus a later epoch's, same number of steps),
    as a share of the run's wall time (target: at most 10%); dev evaluation, training
    epochs and after-fit work (threshold tuning, test set) are listed beside it.

Part 2, for the first run config of the grid file, times:
  1. loading the encoder to learn its tokenizer (the grid does this once per encoder),
  2. `prepare_data` with no token cache (read + tokenize: what every run paid without reuse),
  3. `prepare_data` with a warm on-disk token cache (`data.cache_dir`: what a plain
     `xtune train` of the same data pays from its second run on),
  4. the grid's in-memory reuse (`PreparedDataCache.get` after the first run),
and prints the seconds the grid saves over its runs against (2) and (3).

    .venv/bin/python benchmarks/grid_overhead.py [experiments/demo.yaml] [--runs 2] [--repeats 3]
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
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PROCESS_START = time.perf_counter()  # before TensorFlow is imported, as `xtune grid` starts


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
    parser.add_argument("--runs", type=int, default=2, help="grid runs for part 1 (0: skip)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    if args.runs:
        run_costs(args.grid_file, args.runs, args.overrides)
    data_reuse(args)
    return 0


def run_costs(grid_file: str, runs: int, overrides: list[str]) -> None:
    import json

    from xtune.grid.runner import run_grid

    with tempfile.TemporaryDirectory() as scratch:
        grid_started = time.perf_counter()
        run_grid(
            grid_file,
            max_runs=runs,
            overrides=[*overrides, f"training.output_dir={scratch}/runs"],
            output=f"{scratch}/results",
        )
        grid_seconds = time.perf_counter() - grid_started
        text = (Path(scratch) / "results" / "results.jsonl").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    failed = [line["run_id"] for line in lines if line["status"] != "ok"]
    if failed:
        raise SystemExit(f"grid runs failed: {failed}; see the output above")
    imports = grid_started - PROCESS_START
    before_runs = grid_seconds - sum(line["wall_seconds"] for line in lines)
    first = lines[0]
    first_step = (
        imports
        + before_runs
        + first["data_seconds"]
        + first["timings"]["setup_seconds"]
        + first["timings"]["first_step_seconds"]
    )
    print(
        f"\n== grid {first['grid']}: first {len(lines)} runs ({time.strftime('%Y-%m-%d %H:%M')}) =="
    )
    print(
        f"process start -> end of the first training step: {first_step:.1f} s "
        f"(imports and grid planning {imports + before_runs:.1f}, data "
        f"{first['data_seconds']:.1f}, setup {first['timings']['setup_seconds']:.1f}, "
        f"first step incl. tracing {first['timings']['first_step_seconds']:.1f})"
    )
    header = (
        f"  {'run':<28}{'wall s':>8}{'data':>7}{'setup':>7}{'tracing':>9}{'fixed':>7}"
        f"{'fixed %':>9}{'train':>8}{'eval':>7}{'after':>7}"
    )
    print(header)
    for line in lines:
        history, timings = line["history"], line["timings"]
        steady = (
            min(record["train_seconds"] for record in history[1:]) if len(history) > 1 else None
        )
        tracing = history[0]["train_seconds"] - steady if steady is not None else float("nan")
        fixed = line["data_seconds"] + timings["setup_seconds"] + max(tracing, 0.0)
        train_seconds = sum(record["train_seconds"] for record in history)
        eval_seconds = sum(record.get("eval_seconds", 0.0) for record in history)
        name = f"{line['row']} seed {line['seed']}"[:27]
        print(
            f"  {name:<28}{line['wall_seconds']:8.1f}{line['data_seconds']:7.1f}"
            f"{timings['setup_seconds']:7.1f}{tracing:9.1f}{fixed:7.1f}"
            f"{100 * fixed / line['wall_seconds']:8.1f}%{train_seconds:8.1f}{eval_seconds:7.1f}"
            f"{timings['after_fit_seconds']:7.1f}"
        )
    print(
        "  fixed = data + setup + tracing; tracing = first epoch's training time minus the "
        "fastest later epoch's\n  (the same steps, already traced); target: fixed <= 10% of "
        "a run's wall time"
    )


def data_reuse(args: argparse.Namespace) -> None:

    from xtune.encoders import load_encoder
    from xtune.grid.prepared_data_cache import PreparedDataCache
    from xtune.grid.spec import load_grid
    from xtune.training.trainer import prepare_data

    spec = load_grid(args.grid_file, args.overrides)
    config = spec.runs[0].config
    keys = PreparedDataCache()
    data_keys = {keys.data_key(run.config, keys.tokenizer_of(run.config)) for run in spec.runs}
    print(
        f"\n== data reuse: grid {spec.name}, {len(spec.runs)} runs, "
        f"{len(data_keys)} data setting(s) =="
    )
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


if __name__ == "__main__":
    sys.exit(main())
