"""A run folder: what a run writes (atomically) and how a trained model is loaded back from it.

Files: config.yaml (resolved), labels.json, encoder.json, vocab.txt, tokenizer.json,
history.json + history.csv, thresholds.json, model.weights.h5, and metrics.json, written
last: a folder without metrics.json is an unfinished run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

WEIGHTS_FILE = "model.weights.h5"
REQUIRED_FILES = (
    "config.yaml",
    "labels.json",
    "encoder.json",
    "vocab.txt",
    "tokenizer.json",
    WEIGHTS_FILE,
    "metrics.json",
)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file, fsync, then rename: readers see the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def save_model_weights(model: Any, path: Path) -> None:
    """The model's weights without the optimizer state, which `save_weights` would add (3x)."""
    from keras.src.saving.saving_lib import save_weights_only

    skip = [model.optimizer] if getattr(model, "optimizer", None) is not None else None
    save_weights_only(model, path, objects_to_skip=skip)


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path) -> RunFolder:
        path = Path(path)
        if (path / "metrics.json").exists():
            raise FileExistsError(
                f"{path}: already holds a finished run; choose another training.run_name "
                "or remove the folder"
            )
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def write_setup(self, config: Any, vocab: Any, encoder: Any, text_encoder: Any) -> None:
        write_atomic(self.path / "config.yaml", config.to_yaml())
        write_atomic(
            self.path / "labels.json",
            json.dumps({"labels": vocab.names}, ensure_ascii=False, indent=1),
        )
        write_atomic(
            self.path / "encoder.json", json.dumps(encoder.record(), indent=1, default=str)
        )
        write_atomic(self.path / "vocab.txt", "\n".join(encoder.vocabulary) + "\n")
        write_atomic(self.path / "tokenizer.json", json.dumps(text_encoder.settings(), indent=1))

    def write_result(self, result: Any, model: Any, thresholds: np.ndarray | None) -> None:
        history = result.history
        write_atomic(self.path / "history.json", json.dumps(history, indent=1))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]) if history else ["epoch"])
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.path / "history.csv", buffer.getvalue())
        if thresholds is not None:
            write_atomic(
                self.path / "thresholds.json",
                json.dumps({"thresholds": [float(t) for t in thresholds]}, indent=1),
            )
        if model is not None:
            temporary = self.path / f".tmp-{os.getpid()}.weights.h5"
            save_model_weights(model, temporary)
            os.replace(temporary, self.path / WEIGHTS_FILE)
        write_atomic(
            self.path / "metrics.json",
            json.dumps(result.summary(), indent=1, ensure_ascii=False, default=str),
        )


class IncompleteRunError(FileNotFoundError):
    pass


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


def check_run_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise IncompleteRunError(f"{path}: run folder not found")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise IncompleteRunError(
            f"{path}: not a finished xtune run folder; missing {', '.join(missing)}"
        )
    return path


def load_run(path: str | Path) -> TrainedRun:
    """Rebuild the architecture from the stored records and load the best weights."""
    from xtune.data.tokenization import TextEncoder
    from xtune.encoders import rebuild_encoder
    from xtune.heads import get_head
    from xtune.losses import get_loss
    from xtune.model import build_classifier

    path = check_run_folder(path)
    config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))["labels"]
    vocabulary = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    encoder = rebuild_encoder(json.loads((path / "encoder.json").read_text()), vocabulary)
    settings = json.loads((path / "tokenizer.json").read_text())
    text_encoder = TextEncoder(vocabulary, **settings)
    model = build_classifier(encoder, get_head(config["head"]), len(labels))
    model.load_weights(path / WEIGHTS_FILE)
    thresholds = None
    if (path / "thresholds.json").is_file():
        thresholds = np.asarray(
            json.loads((path / "thresholds.json").read_text())["thresholds"], dtype=np.float32
        )
    return TrainedRun(
        path=path,
        config=config,
        model=model,
        text_encoder=text_encoder,
        labels=labels,
        loss=get_loss(config["loss"]),
        thresholds=thresholds,
        has_pair=bool(config["data"].get("text_pair")),
    )
