"""The Python API: `xtune.train(config) -> RunResult` and `xtune.load(path).predict(texts)`.

```python
import xtune

result = xtune.train("experiments/demo_train.yaml", {"training.epochs": 1})
model = xtune.load(result.run_dir)  # a run folder, or an `xtune export` folder
for prediction in model.predict(["小区噪音扰民"], pairs=["夜里施工"]):
    print(prediction.labels, prediction.probabilities)
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtune.config import apply_overrides, load_run_config, parse_run_config
from xtune.config_schema import RunConfig


def train(
    config: str | Path | dict[str, Any] | RunConfig,
    overrides: dict[str, Any] | list[str] | None = None,
    run_dir: str | Path | None = None,
) -> Any:
    """Train one run, as `xtune train CONFIG --set key=value ... [--run-dir RUN_DIR]` does.

    Args:
        config: a YAML file, a raw config dict, or a parsed `RunConfig`.
        overrides: `--set` overrides: `{"training.epochs": 1}` or `["training.epochs=1"]`.
        run_dir: the run folder (default `training.output_dir` / `training.run_name`).

    Returns:
        The `xtune.training.trainer.RunResult` (`run_dir`, `best`, `tuned`, `test`,
        `summary()`, ...); the run folder holds the same in metrics.json.
    """
    from xtune.training.trainer import train as train_run

    return train_run(run_config(config, overrides), run_dir=run_dir)


def run_config(
    config: str | Path | dict[str, Any] | RunConfig,
    overrides: dict[str, Any] | list[str] | None = None,
) -> RunConfig:
    """`config` validated into a `RunConfig`, with `overrides` applied."""
    if isinstance(config, (str, Path)):
        return load_run_config(config, overrides)
    if isinstance(config, RunConfig):
        if not overrides:
            return config
        config = config.to_dict()
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a file path, a dict or a RunConfig, got {config!r}")
    raw = apply_overrides(config, overrides or {}, source="config")
    return parse_run_config(raw, source="config")


@dataclass
class Prediction:
    """One text's prediction: the labels the served decision rule chose (most probable
    first) and every label's probability; for a score task, `score` and no labels."""

    labels: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    score: float | None = None


class Model:
    """A trained model loaded for prediction (see `load`)."""

    def __init__(self, predictor: Any):
        self.predictor = predictor

    @property
    def task(self) -> str:
        return self.predictor.task

    @property
    def labels(self) -> list[str]:
        return list(self.predictor.labels)

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list[Prediction]:
        """Predictions for raw `texts` (and the second segments `pairs`, for a pair task),
        by the decision rule and thresholds the run serves."""
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of strings, got one string")
        if not texts:
            return []
        outputs = self.predictor.predict(list(texts), None if pairs is None else list(pairs))
        if not self.predictor.labels:
            return [Prediction(score=float(value)) for value in np.ravel(outputs["score"])]
        return [
            Prediction(
                labels=[self.labels[i] for i in np.argsort(-row) if chosen[i]],
                probabilities={label: float(p) for label, p in zip(self.labels, row, strict=True)},
            )
            for row, chosen in zip(outputs["probabilities"], outputs["predictions"], strict=True)
        ]


def load(path: str | Path, task: str | None = None) -> Model:
    """A run folder or an `xtune export` folder, ready to `predict`; `task` picks one task of
    a multi-task model (it may be left out when there is one). The model loads on the first
    `predict` call."""
    from xtune.export.predict import open_predictor

    return Model(open_predictor(path, task))
