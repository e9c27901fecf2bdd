"""What dropout costs a fixed-shape training step, in TensorFlow (graph and XLA) and in PyTorch
+ transformers: the forward and backward of MiniLM-L6's architecture (random weights, batch 32
x 128 tokens, float32) with the checkpoint's dropout (0.1 on hidden states and attention
probabilities) and with none. No optimizer: the difference between the rows is dropout alone,
and the no-dropout rows compare the two frameworks' matmul and attention work directly.

    .venv/bin/python benchmarks/dropout_share.py            # ~3 min on 2 cores
    .venv/bin/python benchmarks/dropout_share.py --torch-python none   # TensorFlow only
    TF_ENABLE_ONEDNN_OPTS=0 .venv/bin/python benchmarks/dropout_share.py   # Eigen kernels

TensorFlow runs as xtune sets it up (`import xtune` first: oneDNN kernels on x86 CPUs).

Each configuration is timed in `--repeats` windows of one step, interleaved repeat by repeat
(the machine is shared); ms best / median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHAPE = dict(vocabulary=30522, layers=6, heads=12, hidden=384, intermediate=1536)
DROPOUTS = (0.1, 0.0)


def tensorflow_steps(batch: int, length: int) -> dict[str, object]:
    """name -> a callable running one forward + backward step."""
    import keras
    import keras_hub
    import tensorflow as tf

    inputs = {
        "token_ids": tf.constant(np.random.default_rng(0).integers(1000, 2000, (batch, length))),
        "segment_ids": tf.zeros((batch, length), tf.int32),
        "padding_mask": tf.ones((batch, length), tf.int32),
    }
    steps = {}
    for dropout in DROPOUTS:
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=SHAPE["vocabulary"],
            num_layers=SHAPE["layers"],
            num_heads=SHAPE["heads"],
            hidden_dim=SHAPE["hidden"],
            intermediate_dim=SHAPE["intermediate"],
            max_sequence_length=512,
            dropout=dropout,
        )
        for xla in (False, True):
            steps[f"tensorflow {'xla' if xla else 'graph'}, dropout {dropout}"] = tf.function(
                lambda backbone=backbone: gradient_sum(backbone, inputs), jit_compile=xla
            )
    return steps


def gradient_sum(backbone, inputs):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        output = backbone(inputs, training=True)["sequence_output"]
        loss = tf.reduce_mean(tf.square(output))
    gradients = tape.gradient(loss, backbone.trainable_variables)
    return tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g)) for g in gradients if g is not None])


def torch_steps(batch: int, length: int) -> dict[str, object]:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (batch, length))
    steps = {}
    for dropout in DROPOUTS:
        config = BertConfig(
            vocab_size=SHAPE["vocabulary"],
            hidden_size=SHAPE["hidden"],
            num_hidden_layers=SHAPE["layers"],
            num_attention_heads=SHAPE["heads"],
            intermediate_size=SHAPE["intermediate"],
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            attn_implementation="sdpa",  # transformers' default on CPU, named
        )
        model = BertModel(config).train()

        def step(model=model):
            output = model(input_ids=ids).last_hidden_state
            (output * output).mean().backward()

        steps[f"torch (sdpa), dropout {dropout}"] = step
    return steps


def timed(steps: dict[str, object], repeats: int) -> dict[str, list[float]]:
    for step in steps.values():  # trace, compile, warm up
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            result = step()
            if hasattr(result, "numpy"):
                result.numpy()
            times[name].append((time.perf_counter() - started) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--torch-python", default=str(REPO / ".venv-torch" / "bin" / "python"))
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        print(json.dumps(timed(torch_steps(args.batch, args.length), args.repeats)))
        return
    import xtune  # noqa: F401  (before TensorFlow loads: its settings, as a run gets them)

    times = timed(tensorflow_steps(args.batch, args.length), args.repeats)
    if args.torch_python != "none":
        worker = [args.torch_python, __file__, "--torch-worker"]
        worker += ["--batch", str(args.batch), "--length", str(args.length)]
        worker += ["--repeats", str(args.repeats)]
        done = subprocess.run(worker, capture_output=True, text=True, check=True)
        times.update(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\nbatch {args.batch} x {args.length} tokens, forward + backward, ms best / median")
    print("| configuration | ms best | ms median |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):,.0f} | {statistics.median(values):,.0f} |")


if __name__ == "__main__":
    main()
