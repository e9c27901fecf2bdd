"""Export of a multi-task run: one SavedModel, one raw-string signature per task.

- `<task>`: `text` (and `text_pair` for pair tasks) -> the task's outputs: `probabilities`,
  `predictions`, `labels` for label tasks; `score` (label units) for score tasks.
- `<task>_embed` for each bi-encoder task (and `embed` when there is exactly one):
  `text` -> `embedding`, the L2-normalised sentence vector.

As in `serving_module`, the raw tf.Variables are tracked once and the Keras models are
closed over. Loading needs `import tensorflow_text` first (tokenizer ops).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from xtune.export.serving_module import TEXT_SPEC

EXPORT_FILE = "xtune_multitask_export.json"


class MultiTaskServingModule(tf.Module):
    def __init__(self, run: Any):
        super().__init__(name="xtune_multitask")
        self.model_weights = [weight.value for weight in run.graph.model.weights]
        self.text_tokenizer = run.encoder.tokenizer  # keeps the tokenizer's resources
        self.functions: dict[str, Any] = {}
        for task in run.tasks:
            self.add_task(task, run)
        embedders = [task for task in run.tasks if task.name in run.graph.embed_models]
        if len(embedders) == 1:
            self.functions["embed"] = self.functions[f"{embedders[0].name}_embed"]
        for name, function in self.functions.items():
            setattr(self, f"signature_{name}", function)

    def add_task(self, task: Any, run: Any) -> None:
        text_encoder = run.text_encoders[task.name]
        task_model = run.graph.task_models[task.name]

        def encode(text: tf.Tensor, pair: tf.Tensor | None = None, prefix: str = "") -> dict:
            encoded = text_encoder.pad(text_encoder.encode(text, pair))
            return {f"{prefix}{key}": value for key, value in encoded.items()}

        if len(task.sides) == 2:

            @tf.function(input_signature=[TEXT_SPEC, TEXT_SPEC], autograph=False)
            def serve(text: tf.Tensor, text_pair: tf.Tensor) -> dict[str, tf.Tensor]:
                inputs = {**encode(text, prefix="a_"), **encode(text_pair, prefix="b_")}
                return task.serving_outputs(task_model(inputs, training=False))

            embed_model = run.graph.embed_models.get(task.name)
            if embed_model is not None:

                @tf.function(input_signature=[TEXT_SPEC], autograph=False)
                def embed(text: tf.Tensor) -> dict[str, tf.Tensor]:
                    vector = tf.cast(
                        embed_model(encode(text, prefix="a_"), training=False), tf.float32
                    )
                    return {"embedding": tf.math.l2_normalize(vector, axis=-1)}

                self.functions[f"{task.name}_embed"] = embed
        elif task.config.data.text_pair:

            @tf.function(input_signature=[TEXT_SPEC, TEXT_SPEC], autograph=False)
            def serve(text: tf.Tensor, text_pair: tf.Tensor) -> dict[str, tf.Tensor]:
                return task.serving_outputs(task_model(encode(text, text_pair), training=False))

        else:

            @tf.function(input_signature=[TEXT_SPEC], autograph=False)
            def serve(text: tf.Tensor) -> dict[str, tf.Tensor]:
                return task.serving_outputs(task_model(encode(text), training=False))

        self.functions[task.name] = serve


def export_multitask_run(run_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write the SavedModel of a multi-task run folder; returns the output folder."""
    from xtune.tasks.run_folder import load_run

    run = load_run(run_dir)
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not force:
            raise FileExistsError(f"{out_dir}: exists; pass force to replace it")
        shutil.rmtree(out_dir)
    module = MultiTaskServingModule(run)
    tf.saved_model.save(module, str(out_dir), signatures=dict(module.functions))
    metadata = {
        "run_dir": str(Path(run_dir).resolve()),
        "tasks": {task.name: task.record() for task in run.tasks},
        "signatures": sorted(module.functions),
    }
    (out_dir / EXPORT_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False))
    print(f"xtune export: {out_dir}: signatures {', '.join(sorted(module.functions))}", flush=True)
    return out_dir


def normalized(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
