"""The per-step constant of xtune's training step: the part of a step's time that does not grow
with its tokens (optimizer update of every weight, per-step overheads), per update mode.

For each update mode (`auto` = Keras' AdamW as element-wise ops, `optimizer` = the same update
compiled alone with XLA (`training.jit_compile: optimizer`), `lazy` = AdamW moving only the
word-embedding rows of the batch's tokens (`optimizer.lazy_embeddings`), `fused` = each
variable's step as TensorFlow's fused Adam kernel (`optimizer.fused_update`), `lazy_fused` =
both, `step` / `step_fused` / `step_lazy` / `step_lazy_fused` = the whole train step
XLA-compiled (`training.jit_compile: true`))
and precision, MiniLM-L6 (batch 32, the benchmark configuration of train_throughput.py) is
stepped at several fixed lengths; a straight line `a + b x tokens` through each length's
median window gives the constant `a`. With `.venv-torch` (or `--torch-python`) PyTorch +
transformers' step of the same model (the train_throughput.py worker: AdamW, clipping,
float32) is a `torch` row, the peer's constant for scale. Configurations are interleaved
repeat by repeat (the machine is shared); best and median of the repeats are printed.
Last, the memory floor of a dense float32 AdamW step: the bytes it must move over the
bandwidth this machine gives an XLA pass over the same weights (40 bytes per weight where the
gradient is written out, as TensorFlow, XLA and PyTorch do; 32 where it never is).

    .venv/bin/python benchmarks/step_constant.py                  # ~8 min on 2 cores
    .venv/bin/python benchmarks/step_constant.py --modes auto lazy --lengths 16 64 128
    # the constant itself: a step of one row of 8 tokens does almost no matmul work
    .venv/bin/python benchmarks/step_constant.py --batch 1 --lengths 8 16 --precisions float32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput as throughput  # noqa: E402

# mode -> (training.jit_compile, extra optimizer settings)
MODES = {
    "auto": ("auto", None),
    "optimizer": ("optimizer", None),
    "lazy": ("auto", {"lazy_embeddings": True}),
    "fused": ("auto", {"fused_update": True}),
    "lazy_fused": ("auto", {"lazy_embeddings": True, "fused_update": True}),
    "step": (True, None),
    "step_fused": (True, {"fused_update": True}),
    "step_lazy": (True, {"lazy_embeddings": True}),
    "step_lazy_fused": (True, {"lazy_embeddings": True, "fused_update": True}),
}


def length_splits(args: argparse.Namespace) -> dict[int, object]:
    """One split of batch x 4 rows per length, every row filling it."""
    from xtune.encoders.sources import minilm_folder, read_vocabulary

    vocabulary = read_vocabulary(minilm_folder() / "vocab.txt")
    rows = args.batch * 4
    throughput.FIXED_LENGTH = max(args.lengths)  # texts long enough for every length
    texts = throughput.full_length_texts(vocabulary, rows)
    labels = throughput.random_labels(rows)
    return {n: throughput.tokenized(texts, labels, vocabulary, n) for n in args.lengths}


def measured_runs(
    args: argparse.Namespace, splits: dict[int, object]
) -> dict[tuple[str, str, int], throughput.XtuneRun]:
    runs = {}
    for length, split in splits.items():
        for precision in args.precisions:
            for mode in args.modes:
                jit, optimizer = MODES[mode]
                run = throughput.XtuneRun(
                    {"name": "minilm-l6"}, precision, split, "fixed", length, jit, optimizer
                )
                run.warm_up(2)
                runs[(mode, precision, length)] = run
    return runs


def torch_streams(
    args: argparse.Namespace, splits: dict, run: throughput.XtuneRun, scratch: Path
) -> throughput.TorchClient | None:
    """The PyTorch worker with the same model and one fixed-length stream per length, warmed
    up; None without a PyTorch interpreter."""
    torch = throughput.start_torch(args.torch_python, "cpu")
    if torch is None:
        return None
    torch.call("build", model=run.backbone_config())
    for length, split in splits.items():
        path = throughput.save_split(split, scratch / f"len{length}.npz")
        name = f"len{length}"
        torch.call(
            "load", name=name, path=path, padding="fixed", max_length=length, batch_size=args.batch
        )
        torch.call("run", stream=name, precision="float32", steps=2)
    return torch


def dense_weights(run: throughput.XtuneRun) -> list[Any]:
    """The trainable weights every dense AdamW step moves: all but the word embedding."""
    from xtune.model import adapter_of

    embedding = adapter_of(run.model).word_embeddings.path
    return [v for v in run.model.trainable_variables if v.path != embedding]


def streaming_pass_seconds(weights: list[Any], repeats: int = 20) -> float:
    """Seconds of one XLA-fused pass that reads and rewrites, in place, a copy of every weight
    (the model untouched), as AdamW rewrites weights and moments: 8 bytes per weight at this
    machine's memory bandwidth, on arrays of the step's own sizes (best of `repeats`)."""
    import tensorflow as tf

    scale = tf.Variable(1.0)  # a variable, so XLA cannot fold the pass away
    copies = [tf.Variable(tf.convert_to_tensor(w)) for w in weights]

    @tf.function(jit_compile=True)
    def one_pass() -> Any:
        for copy in copies:
            copy.assign(copy * scale)
        return scale + 0.0

    float(one_pass())
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        float(one_pass())
        seconds.append(time.perf_counter() - started)
    return min(seconds)


def print_memory_floor(run: throughput.XtuneRun) -> None:
    """The time a dense float32 AdamW step cannot go below at this machine's bandwidth:
    forward reads each weight (4 bytes), backward reads it again and writes its gradient (8),
    the update reads weight, gradient and both moments and writes weight and moments (28)."""
    weights = dense_weights(run)
    size = sum(int(np.prod(w.shape)) for w in weights)
    bandwidth = 8 * size / streaming_pass_seconds(weights)  # 4 bytes read, 4 written each
    print(
        f"\nmemory floor of a dense float32 AdamW step: {size / 1e6:.1f}M weights besides the "
        f"word embedding, streamed at {bandwidth / 1e9:.1f} GB/s (an XLA read + write pass "
        "over copies of them):"
    )
    labels = {40: "gradient written and read back", 32: "gradient never written out"}
    for per_weight, label in labels.items():
        print(
            f"  {per_weight} bytes per weight ({label}): {per_weight * size / 1e6:.0f} MB, "
            f"{1e3 * per_weight * size / bandwidth:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", default=["auto", "optimizer", "lazy"], choices=MODES)
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[16, 64, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--torch-python",
        default=str(throughput.REPO / ".venv-torch" / "bin" / "python"),
        help="interpreter with torch and transformers (a missing one skips the torch row)",
    )
    args = parser.parse_args()
    throughput.BATCH_SIZE = args.batch
    machine = throughput.machine_description()
    print(f"{machine}; load before: {throughput.load_average()}", flush=True)
    started = time.perf_counter()
    splits = length_splits(args)
    runs = measured_runs(args, splits)
    print(f"built and warmed {len(runs)} models in {time.perf_counter() - started:.0f} s")
    windows: dict[tuple[str, str, int], list[float]] = {key: [] for key in runs}
    with tempfile.TemporaryDirectory() as scratch:
        torch = torch_streams(args, splits, next(iter(runs.values())), Path(scratch))
        if torch is not None:
            args.modes.append("torch")
            windows.update({("torch", "float32", n): [] for n in args.lengths})
        for _ in range(args.repeats):
            for key, run in runs.items():
                seconds, _, _ = run.run(args.steps)
                windows[key].append(seconds / args.steps)
            for length in args.lengths if torch is not None else []:
                reply = torch.call(
                    "run", stream=f"len{length}", precision="float32", steps=args.steps
                )
                windows[("torch", "float32", length)].append(reply["seconds"] / args.steps)
        if torch is not None:
            torch.close()
    print(f"\nMiniLM-L6, batch {args.batch}, ms per step (best / median of {args.repeats}):")
    print(f"{'mode':<10} {'precision':<15}" + "".join(f"{f'len {n}':>16}" for n in args.lengths))
    for mode in args.modes:
        for precision in args.precisions if mode != "torch" else ["float32"]:
            cells = []
            for length in args.lengths:
                times = windows[(mode, precision, length)]
                cells.append(f"{1e3 * min(times):7.0f} / {1e3 * statistics.median(times):5.0f}")
            print(f"{mode:<10} {precision:<15}" + "".join(f"{c:>16}" for c in cells))
    print_memory_floor(next(iter(runs.values())))
    if len(args.lengths) < 2:  # no line through one length
        print(f"load after: {throughput.load_average()}")
        return
    # Through each length's median: one slow window of a shared machine would tilt the line.
    print("\nfit a + b x tokens (through the medians):")
    for mode in args.modes:
        for precision in args.precisions if mode != "torch" else ["float32"]:
            tokens = [args.batch * n for n in args.lengths]
            seconds = [statistics.median(windows[(mode, precision, n)]) for n in args.lengths]
            slope, intercept = np.polyfit(tokens, seconds, 1)
            print(
                f"  {mode:<10} {precision:<15} a = {1e3 * intercept:6.1f} ms, "
                f"b = {1e6 * slope:6.1f} us/token"
            )
    print(f"load after: {throughput.load_average()}")


if __name__ == "__main__":
    main()
