"""One shared encoder, one output per task: the model of a run with `tasks:`.

`model` is one functional Keras model over every task's inputs (keyed `<task>__<input>`)
with one output per task; it holds every weight once, so it is what is saved, loaded,
frozen (`set_trainable` finds its `encoder` sub-model) and optimized. `task_models[name]`
are functional views of the same layers on one task's inputs: what a training step of that
task and its predictions call. `embed_models[name]` (bi-encoders): text -> sentence vector.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import keras

from xtune.model import ADAPTER_ATTRIBUTE, encoder_features_model


@dataclass
class MultiTaskModel:
    model: keras.Model
    task_models: dict[str, keras.Model]
    embed_models: dict[str, keras.Model] = field(default_factory=dict)

    @property
    def encoder_model(self) -> keras.Model:
        return self.model.get_layer("encoder")


def build_multitask_model(encoder: Any, tasks: list[Any]) -> MultiTaskModel:
    """The shared encoder sub-model, each task's output on it, and the views described above.

    Each task must know its labels (`task.load` sets them) before its output layer is built.
    """
    encoder_model = encoder_features_model(encoder)
    inputs, outputs, task_models, embed_models = {}, {}, {}, {}
    for task in tasks:
        task_inputs, output = task.build_output(encoder, encoder_model)
        with warnings.catch_warnings():
            # A view's input keys ("token_ids") differ from its inputs' layer names
            # ("<task>__token_ids", unique across the whole model) on purpose.
            warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")
            task_models[task.name] = keras.Model(task_inputs, output, name=f"task_{task.name}")
        inputs.update({f"{task.name}__{key}": value for key, value in task_inputs.items()})
        outputs[task.name] = output
        if getattr(task, "embedding", None) is not None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")
                embed_models[task.name] = keras.Model(
                    task.embed_inputs(task_inputs), task.embedding, name=f"embed_{task.name}"
                )
    model = keras.Model(inputs, outputs, name="xtune_multitask")
    setattr(model, ADAPTER_ATTRIBUTE, encoder)
    return MultiTaskModel(model, task_models, embed_models)
