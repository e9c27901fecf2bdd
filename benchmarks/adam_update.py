"""The optimizer update alone, on MiniLM-L6's 22.7M trainable weights: Keras' Adam (element-wise
ops, with and without global-norm clipping, and XLA-compiled) against TensorFlow's fused
kernel `ResourceApplyAdam` (`optimizer.fused_update`), with and without the 11.7M-entry word
embedding (what `optimizer.lazy_embeddings` takes out of the dense update). Random dense
gradients; ms per update, best and median of `--repeats`.

    .venv/bin/python benchmarks/adam_update.py            # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_throughput as throughput  # noqa: E402


def timed(function: Any, repeats: int) -> tuple[float, float]:
    function()
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1e3 * min(times), 1e3 * statistics.median(times)


def minilm_variables(with_embedding: bool) -> list[Any]:
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30522,
        num_layers=6,
        num_heads=12,
        hidden_dim=384,
        intermediate_dim=1536,
        max_sequence_length=512,
    )
    word_embedding = backbone.token_embedding.embeddings
    return [v for v in backbone.trainable_variables if with_embedding or v is not word_embedding]


def updates(variables: list[Any], gradients: list[Any]) -> dict[str, Any]:
    """name -> a compiled function applying one update of `gradients` to `variables`."""
    import keras
    import tensorflow as tf

    from xtune.training.optimizers import FusedAdam

    def applying(optimizer: Any, jit: bool = False) -> Any:
        optimizer.build(variables)
        return tf.function(lambda: optimizer.apply(gradients, variables), jit_compile=jit)

    return {
        "keras adam, clipnorm 1": applying(keras.optimizers.Adam(1e-5, global_clipnorm=1.0)),
        "keras adam": applying(keras.optimizers.Adam(1e-5)),
        "keras adam, XLA": applying(keras.optimizers.Adam(1e-5), jit=True),
        "fused kernel": applying(FusedAdam(1e-5)),
        "fused kernel, clipnorm 1": applying(FusedAdam(1e-5, global_clipnorm=1.0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf

    print(f"{throughput.machine_description()}; load before: {throughput.load_average()}")
    for with_embedding in (True, False):
        variables = minilm_variables(with_embedding)
        rng = np.random.default_rng(0)
        gradients = [tf.constant(rng.normal(size=v.shape).astype(np.float32)) for v in variables]
        count = sum(int(np.prod(v.shape)) for v in variables)
        title = "all weights" if with_embedding else "without the word embedding"
        print(f"\n{title}: {len(variables)} variables, {count / 1e6:.1f}M weights")
        for name, function in updates(variables, gradients).items():
            best, median = timed(function, args.repeats)
            print(f"  {name:<26} {best:7.1f} ms best {median:7.1f} ms median")
    print(f"\nload after: {throughput.load_average()}")


if __name__ == "__main__":
    main()
