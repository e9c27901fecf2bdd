"""One task of a trained run as the single-task export and predictor read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xtune.tasks.run_folder import LoadedRun, load_run


@dataclass
class TrainedRun:
    """A trained classifier loaded from a run folder, with what it needs to tokenize and decide."""

    path: Path
    config: dict[str, Any]
    model: Any
    text_encoder: Any
    labels: list[str]
    loss: Any
    thresholds: np.ndarray | None
    has_pair: bool

    @property
    def decision_thresholds(self) -> Any:
        """Tuned per-label thresholds when present, else the loss's own rule."""
        return self.thresholds if self.thresholds is not None else self.loss.default_threshold


def trained_run(loaded: LoadedRun, task_name: str | None = None) -> TrainedRun:
    """The classifier of one task (the first by default) of a loaded run."""
    task = loaded.task(task_name)
    data = task.config.data
    return TrainedRun(
        path=loaded.path,
        config=loaded.config.to_dict(),
        model=loaded.graph.task_models[task.name],
        text_encoder=loaded.text_encoders[task.name],
        labels=list(task.labels),
        loss=task.loss,
        thresholds=loaded.thresholds[task.name],
        has_pair=bool(data.text_pair),
    )


def load_trained_run(path: str | Path, check: bool = True) -> TrainedRun:
    """`load_run` (weights checked unless `check` is off), as its first task's classifier."""
    return trained_run(load_run(path, check))
