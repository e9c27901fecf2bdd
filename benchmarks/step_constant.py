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
median window gives the constant `a`. Configurations are interleaved repeat by repeat (the
machine is shared); best and median of the repeats are printed.

    .venv/bin/python benchmarks/step_constant.py                  # ~8 min on 2 cores
    .venv/bin/python benchmarks/step_constant.py --modes auto lazy --lengths 16 64 128
    # the constant itself: a step of one row of 8 tokens does almost no matmul work
    .venv/bin/python benchmarks/step_constant.py --batch 1 --lengths 8 16 --precisions float32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

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


def measured_runs(args: argparse.Namespace) -> dict[tuple[str, str, int], throughput.XtuneRun]:
    from xtune.encoders.sources import minilm_folder, read_vocabulary

    vocabulary = read_vocabulary(minilm_folder() / "vocab.txt")
    rows = args.batch * 4
    throughput.FIXED_LENGTH = max(args.lengths)  # texts long enough for every length
    texts = throughput.full_length_texts(vocabulary, rows)
    labels = throughput.random_labels(rows)
    runs = {}
    for length in args.lengths:
        split = throughput.tokenized(texts, labels, vocabulary, length)
        for precision in args.precisions:
            for mode in args.modes:
                jit, optimizer = MODES[mode]
                run = throughput.XtuneRun(
                    {"name": "minilm-l6"}, precision, split, "fixed", length, jit, optimizer
                )
                run.warm_up(2)
                runs[(mode, precision, length)] = run
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", default=["auto", "optimizer", "lazy"], choices=MODES)
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[16, 64, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    throughput.BATCH_SIZE = args.batch
    machine = throughput.machine_description()
    print(f"{machine}; load before: {throughput.load_average()}", flush=True)
    started = time.perf_counter()
    runs = measured_runs(args)
    print(f"built and warmed {len(runs)} models in {time.perf_counter() - started:.0f} s")
    windows: dict[tuple[str, str, int], list[float]] = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            seconds, _, _ = run.run(args.steps)
            windows[key].append(seconds / args.steps)
    print(f"\nMiniLM-L6, batch {args.batch}, ms per step (best / median of {args.repeats}):")
    print(f"{'mode':<10} {'precision':<15}" + "".join(f"{f'len {n}':>16}" for n in args.lengths))
    for mode in args.modes:
        for precision in args.precisions:
            cells = []
            for length in args.lengths:
                times = windows[(mode, precision, length)]
                cells.append(f"{1e3 * min(times):7.0f} / {1e3 * statistics.median(times):5.0f}")
            print(f"{mode:<10} {precision:<15}" + "".join(f"{c:>16}" for c in cells))
    # Through each length's median: one slow window of a shared machine would tilt the line.
    print("\nfit a + b x tokens (through the medians):")
    for mode in args.modes:
        for precision in args.precisions:
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
