"""xtune: fine-tune BERT-family encoders for (multi-label) text classification with Keras 3.

`xtune.train(config) -> RunResult` and `xtune.load(path).predict(texts)` (`xtune.api`) are
imported on first use, so `import xtune` stays light: no TensorFlow until a run needs it.
"""

import os
import platform
from typing import Any

__version__ = "0.1.0"
X86_MACHINES = ("x86_64", "amd64")  # `platform.machine()`, lower-cased, of the CPUs below

# TensorFlow's oneDNN kernels (fused matmuls, oneDNN batch matmul) are on by default only on
# x86 CPUs with AVX-512 class features; on AVX2-only x86 CPUs (many AMD EPYC, older Xeon) TF
# falls back to Eigen kernels that run a MiniLM step 1.3x slower (benchmarks/README.md,
# "oneDNN"). xtune turns them on for every x86 CPU, before anything imports TensorFlow; a
# user's own TF_ENABLE_ONEDNN_OPTS (0 keeps the Eigen kernels) wins. Set here because every
# import of xtune (its CLI, its API, a test) runs this module first.
if platform.machine().lower() in X86_MACHINES:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__all__ = ["__version__", "train", "load", "Model", "Prediction"]
API_NAMES = ("train", "load", "Model", "Prediction")


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        from xtune import api

        return getattr(api, name)
    raise AttributeError(f"module 'xtune' has no attribute {name!r}")
