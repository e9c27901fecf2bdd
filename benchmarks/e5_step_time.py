"""Training step time with `encoder: multilingual-e5-small`: full vocabulary, trimmed vocabulary,
frozen embeddings; the trimmed model with the optimizer's update compiled with XLA
(`training.jit_compile: optimizer`).

    .venv/bin/python benchmarks/e5_step_time.py [--steps 3] [--repeats 3] [--length 128]
        [--pieces 6000] [--precision mixed_bfloat16]

The encoder's word embedding is 96.0M of its 117.7M parameters (250,037 x 384). With AdamW,
full fine-tuning updates every row of it each step (the gradient of a gather is sparse, but
AdamW's moments and weight decay touch the whole table), so the update alone moves ~1.5 GB
per step. `finetune.freeze_embeddings` keeps the embedding tables (and their LayerNorm)
fixed. `data.trim_vocabulary` keeps only the rows the corpus uses (`--pieces` of them, chosen
at random here; the teddycup2020 appeals use ~6,000): the table and its moments shrink ~40x.
The models are the trainer's own (`build_model`: mean-pooling head, `bce`, `adamw`
with weight decay and global-norm clipping, compiled as `train` compiles them), stepped with
the compiled train function `fit` calls, on fixed batches of random ids (batch 32, every row
`--length` tokens, 10 labels). The configurations share one loaded encoder and are timed
repeat by repeat in turn, so load from other users of the machine hits both alike; "best" is
the fastest repeat, "median" the median, in ms per step and samples per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

BATCH_SIZE = 32
NUM_LABELS = 10
SEED = 0
# name -> (finetune settings, trim the vocabulary, training.jit_compile)
CONFIGURATIONS = {
    "full vocabulary": ({}, False, "auto"),
    "trimmed vocabulary": ({}, True, "auto"),
    "trimmed, XLA update": ({}, True, "optimizer"),
    "freeze_embeddings": ({"freeze_embeddings": True}, False, "auto"),
}


def run_config(length: int, finetune: dict, precision: str, jit_compile: str = "auto"):
    from xtune.config import parse_run_config

    return parse_run_config(
        {
            "data": {"train": "unused.csv", "max_length": length},
            "encoder": "multilingual-e5-small",
            "head": {"name": "pooling", "pooling": "mean"},
            "loss": "bce",
            "optimizer": {"name": "adamw", "learning_rate": 2e-5, "weight_decay": 0.01},
            "finetune": finetune,
            "training": {
                "batch_size": BATCH_SIZE,
                "mixed_precision": precision,
                "jit_compile": jit_compile,
            },
        },
        source="e5_step_time",
    )


def batches(vocabulary_size: int, length: int):
    from train_throughput import fit_batches

    """An endless stream of one fixed batch shape: random ids, every position real."""
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    token_ids = rng.integers(4, vocabulary_size, (4 * BATCH_SIZE, length), dtype=np.int32)
    token_ids[:, 0], token_ids[:, -1] = 0, 2
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, bool)}
    labels = (rng.random((4 * BATCH_SIZE, NUM_LABELS)) < 0.2).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(BATCH_SIZE)
    return iter(fit_batches(dataset.repeat()))  # as `fit` reads a one-task stage


def compiled_model(encoder, config):
    """The trainer's model for `config` (`train_throughput.compiled_task_model`: the one-task
    TaskModel, compiled as the trainer compiles it), with its train function made."""
    from train_throughput import compiled_task_model

    model = compiled_task_model(config, encoder, NUM_LABELS)
    model.make_train_function()
    return model


def time_steps(model, stream, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(stream)
    float(logs["loss"])
    return (time.perf_counter() - started) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--pieces", type=int, default=6000, help="rows the trimmed model keeps")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    args = parser.parse_args(argv)

    import keras

    from xtune.encoders import load_encoder
    from xtune.encoders.trimmed_vocabulary import trim_encoder

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(SEED)
    started = time.perf_counter()
    configs = {
        name: run_config(args.length, finetune, args.precision, jit)
        for name, (finetune, _, jit) in CONFIGURATIONS.items()
    }
    encoder = load_encoder(configs["full vocabulary"].encoder)
    print(f"encoder loaded in {time.perf_counter() - started:.1f} s: {encoder.source}")
    rng = np.random.default_rng(SEED)
    kept = rng.choice(encoder.tokenizer.vocabulary_size, args.pieces, replace=False)
    trimmed = trim_encoder(encoder, kept)
    encoders = {name: trimmed if trim else encoder for name, (_, trim, _) in CONFIGURATIONS.items()}

    models, streams, seconds = {}, {}, {name: [] for name in configs}
    for name, config in configs.items():  # traced one after the other: each has its own step
        started = time.perf_counter()
        models[name] = compiled_model(encoders[name], config)
        streams[name] = batches(encoders[name].tokenizer.vocabulary_size, args.length)
        time_steps(models[name], streams[name], 1)
        trainable = sum(int(np.prod(v.shape)) for v in models[name].trainable_variables)
        print(
            f"{name}: {trainable / 1e6:.1f}M trainable, first step after "
            f"{time.perf_counter() - started:.1f} s"
        )
    for _ in range(args.repeats):
        for name, model in models.items():
            seconds[name].append(time_steps(model, streams[name], args.steps))

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"\nbatch {BATCH_SIZE} x {args.length} tokens, {args.precision}, "
        f"{args.repeats} repeats of {args.steps} steps; load average {load} "
        f"on {os.cpu_count()} cores"
    )
    print("| configuration | ms/step best | ms/step median | samples/s (best) |")
    print("|---|---|---|---|")
    for name, times in seconds.items():
        best, median = min(times), statistics.median(times)
        print(f"| {name} | {best * 1e3:.0f} | {median * 1e3:.0f} | {BATCH_SIZE / best:.1f} |")


if __name__ == "__main__":
    main()
