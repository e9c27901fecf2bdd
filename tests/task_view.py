"""One task of a loaded run as tests read it: its Keras model, text encoder, labels, loss and
tuned thresholds (`xtune.tasks.run_folder.LoadedRun` holds them by task)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xtune.tasks.run_folder import LoadedRun, load_run


@dataclass
class TaskView:
    run: LoadedRun
    name: str

    @property
    def task(self) -> Any:
        return self.run.task(self.name)

    @property
    def model(self) -> Any:
        return self.run.graph.task_models[self.name]

    @property
    def text_encoder(self) -> Any:
        return self.run.text_encoders[self.name]

    @property
    def labels(self) -> list[str]:
        return list(self.task.labels)

    @property
    def loss(self) -> Any:
        return self.task.loss

    @property
    def thresholds(self) -> np.ndarray | None:
        return self.run.thresholds[self.name]


def load_task_view(path: str | Path, task: str | None = None) -> TaskView:
    """`load_run`, viewed as its task `task` (the first by default)."""
    run = load_run(path)
    return TaskView(run, run.task(task).name)


def served_thresholds(run_dir: Path, task: str = "default") -> list[float] | None:
    """thresholds.json's served thresholds of `task` in label order (None: default rule)."""
    import json

    by_label = json.loads((Path(run_dir) / "thresholds.json").read_text())["thresholds"][task]
    return None if by_label is None else list(by_label.values())
