"""Latency of an exported xtune SavedModel (raw strings vs token ids), its size, and in-framework
`predict_on_batch` throughput.

    .venv/bin/python benchmarks/inference_latency.py RUN_DIR [--export DIR] [--repeats 50]

RUN_DIR is a finished run folder. Without --export the run is exported to a temporary folder
first (with --export DIR, an existing export is reused, or DIR is created). Texts (and pairs)
come from the run's dev file, cycled to fill each batch. For every batch size it prints p50 /
p99 milliseconds per call of `serving_default` (tokenize + model + decision), `tokenize` alone
and `serving_token_ids` on the same, already padded ids; then the size on disk next to the
run's model.weights.h5, and `predict_on_batch` throughput of the in-framework model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow is imported before xtune here, as in a serving process without xtune, so this is
# the value TensorFlow starts with (xtune's later import sets it, too late to matter); unset,
# TensorFlow chooses its kernels itself (oneDNN only on AVX-512 class x86).
ONEDNN_AT_START = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402, F401  (registers the tokenizer ops of the export)

from xtune.config import DataConfig  # noqa: E402
from xtune.data.examples import read_examples  # noqa: E402
from xtune.export.saved_model import EXPORT_FILE, export_run, format_bytes  # noqa: E402
from xtune.run_folder import check_run_folder  # noqa: E402
from xtune.tasks.run_folder import load_run, task_inputs  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished run folder")
    parser.add_argument("--export", help="export folder to reuse or create (default: temporary)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per batch size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per batch size")
    parser.add_argument("--predict-rows", type=int, default=256, help="in-framework rows")
    return parser.parse_args()


def dev_texts(run_dir: Path) -> tuple[list[str], list[str] | None]:
    config = load_run_config_data(run_dir)
    examples = read_examples(config, config.dev or config.train)
    return examples.texts, examples.pairs


def load_run_config_data(run_dir: Path) -> DataConfig:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    return DataConfig(**config["data"])


def batch_of(items: list[str], size: int, offset: int) -> list[str]:
    return [items[(offset + i) % len(items)] for i in range(size)]


def time_calls(function, feeds: list[dict], warmup: int) -> np.ndarray:
    """Milliseconds per call, over `feeds` (each call's outputs are fetched to numpy)."""
    for feed in feeds[:warmup]:
        {k: v.numpy() for k, v in function(**feed).items()}
    timings = []
    for feed in feeds:
        started = time.perf_counter()
        {k: v.numpy() for k, v in function(**feed).items()}
        timings.append((time.perf_counter() - started) * 1000)
    return np.asarray(timings)


def describe(timings: np.ndarray, batch_size: int) -> str:
    p50, p99 = np.percentile(timings, [50, 99])
    return f"{p50:8.2f} {p99:8.2f} {batch_size * 1000 / p50:9.0f}"


def main() -> int:
    args = parse_args()
    run_dir = check_run_folder(args.run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        export_dir = Path(args.export) if args.export else Path(scratch) / "export"
        if not (export_dir / EXPORT_FILE).is_file():
            started = time.perf_counter()
            export_run(run_dir, export_dir)
            print(f"exported in {time.perf_counter() - started:.1f} s")
        report(args, run_dir, export_dir)
    return 0


def report(args: argparse.Namespace, run_dir: Path, export_dir: Path) -> None:
    metadata = json.loads((export_dir / EXPORT_FILE).read_text(encoding="utf-8"))
    texts, pairs = dev_texts(run_dir)
    model = tf.saved_model.load(str(export_dir))
    serve = model.signatures["serving_default"]
    tokenize = model.signatures["tokenize"]
    serve_ids = model.signatures["serving_token_ids"]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}, TF {tf.__version__}; "
        f"{metadata['num_labels']} labels, max_length {metadata['max_length']}, "
        f"inputs {', '.join(metadata['inputs'])}; {args.repeats} timed calls per row; "
        f"TF_ENABLE_ONEDNN_OPTS at TensorFlow's start {ONEDNN_AT_START}"
    )
    print(f"\n{'signature':<20}{'batch':>6} {'p50 ms':>8} {'p99 ms':>8} {'rows/s':>9}")
    for batch_size in args.batch_sizes:
        feeds = []
        for repeat in range(args.repeats):
            offset = repeat * batch_size
            feed = {"text": tf.constant(batch_of(texts, batch_size, offset))}
            if pairs is not None:
                feed["text_pair"] = tf.constant(batch_of(pairs, batch_size, offset))
            feeds.append(feed)
        id_feeds = [dict(tokenize(**feed)) for feed in feeds]
        rows = {
            "serving_default": time_calls(serve, feeds, args.warmup),
            "tokenize": time_calls(tokenize, feeds, args.warmup),
            "serving_token_ids": time_calls(serve_ids, id_feeds, args.warmup),
        }
        for name, timings in rows.items():
            print(f"{name:<20}{batch_size:>6} {describe(timings, batch_size)}")

    sizes = metadata["size_bytes"]
    print(
        f"\nsize on disk: export {format_bytes(sizes['total'])} = variables "
        f"{format_bytes(sizes['variables'])} + saved_model.pb "
        f"{format_bytes(sizes['saved_model_pb'])} + assets {format_bytes(sizes['assets'])}; "
        f"weight values {format_bytes(sizes['weight_values'])}; run's model.weights.h5 "
        f"{format_bytes(sizes['run_weights_file'])}"
    )
    in_framework_throughput(run_dir, texts, pairs, args.predict_rows)


def in_framework_throughput(
    run_dir: Path, texts: list[str], pairs: list[str] | None, rows: int
) -> None:
    """Rows/s of the in-framework model, stepped 32 rows at a time by `predict_on_batch` as
    `xtune predict` on a run folder does (best of 3 passes after a warm-up pass). Not Keras'
    `predict`: its tf.data iterator's teardown waited 3-4.5 s in about half the calls here
    (tf.data's autotuning thread), which would time the wait, not the model."""
    run = load_run(run_dir)
    task = run.task()  # the default task, which `serving_default` serves
    batch_pairs = None if pairs is None else batch_of(pairs, rows, 0)
    inputs = task_inputs(run, task.name, batch_of(texts, rows, 0), batch_pairs)
    model = run.graph.task_models[task.name]
    batches = [{k: v[i : i + 32] for k, v in inputs.items()} for i in range(0, rows, 32)]
    passes = []
    for _ in range(4):
        started = time.perf_counter()
        for batch in batches:
            model.predict_on_batch(batch)  # returns numpy: the batch is done
        passes.append(time.perf_counter() - started)
    length = next(iter(inputs.values())).shape[1]
    print(
        f"in-framework predict_on_batch (batch 32, ids padded to {length}): "
        f"{rows / min(passes[1:]):.0f} rows/s over {rows} rows"
    )


if __name__ == "__main__":
    sys.exit(main())
