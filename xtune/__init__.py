"""xtune: fine-tune BERT-family encoders for (multi-label) text classification with Keras 3.

`xtune.train(config) -> RunResult` and `xtune.load(path).predict(texts)` (`xtune.api`) are
imported on first use, so `import xtune` stays light: no TensorFlow until a run needs it.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "train", "load", "Model", "Prediction"]
API_NAMES = ("train", "load", "Model", "Prediction")


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        from xtune import api

        return getattr(api, name)
    raise AttributeError(f"module 'xtune' has no attribute {name!r}")
