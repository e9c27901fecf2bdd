"""The model of a run: one shared encoder sub-model and every task's output on it.

`build_task_graph` builds it for any number of tasks. `model` is one functional Keras model
over every task's inputs (keyed `<task>__<input>`) with one output per task; it holds every
weight once, so it is what is saved, loaded, frozen (`set_trainable` finds its `encoder`
sub-model) and optimized. `task_models[name]` are functional views of the same layers on one
task's inputs: what a training step of that task and its predictions call.
`embed_models[name]` (bi-encoders): text -> sentence vector. `build_classifier` is the bare
encoder -> head -> logits model of layer-level tests and benchmarks (no task, no data).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from xtune.encoders import EncoderAdapter
from xtune.heads import Head

# The functional encoder sub-model's name; layer-wise learning rates and freezing look it up.
ENCODER_NAME = "encoder"
# The built classifier keeps its encoder adapter here (parameter groups, LoRA, embeddings).
ADAPTER_ATTRIBUTE = "encoder_adapter"


def model_inputs(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in names}


def encoder_features_model(encoder: EncoderAdapter) -> keras.Model:
    """The adapter's features (`sequence_output`, `pooled_output` where the family has one,
    `hidden_states`) as one functional sub-model on `encoder.input_names`."""
    inputs = model_inputs(encoder.input_names)
    features = encoder.features(inputs)
    outputs = {name: value for name, value in features.items() if name != "padding_mask"}
    return keras.Model(inputs, outputs, name=ENCODER_NAME)


def build_classifier(
    encoder: EncoderAdapter,
    head: Head,
    num_labels: int,
    model_class: type = keras.Model,
    **model_kwargs: Any,
) -> keras.Model:
    """Encoder -> head -> Dense logits on the adapter's `input_names`, as a `model_class`
    built with `model_kwargs`; the adapter stays reachable as `model.encoder_adapter`."""
    inputs = model_inputs(encoder.input_names)
    features = dict(encoder_features_model(encoder)(inputs))
    features["padding_mask"] = inputs["padding_mask"]
    vector = head(features)
    # Logits stay float32 under mixed precision: losses and thresholds need the range.
    logits = keras.layers.Dense(num_labels, name="logits", dtype="float32")(vector)
    model = model_class(inputs=inputs, outputs=logits, name="xtune_classifier", **model_kwargs)
    setattr(model, ADAPTER_ATTRIBUTE, encoder)
    return model


@dataclass
class TaskGraph:
    model: keras.Model
    task_models: dict[str, keras.Model]
    embed_models: dict[str, keras.Model] = field(default_factory=dict)

    @property
    def encoder_model(self) -> keras.Model:
        return self.model.get_layer(ENCODER_NAME)


def build_task_graph(
    encoder: EncoderAdapter, tasks: list[Any], model_class: type = keras.Model
) -> TaskGraph:
    """The shared encoder sub-model, each task's output on it, and the views described in
    the module docstring; `model` is a `model_class` (the training step's subclass, or a
    plain `keras.Model` to predict and export: the weights are the same).

    Each task must know its labels (`task.load` sets them) before its output is built.
    """
    encoder_model = encoder_features_model(encoder)
    inputs, outputs, task_models, embed_models = {}, {}, {}, {}
    for task in tasks:
        task_inputs, output = task.build_output(encoder, encoder_model)
        task_models[task.name] = functional_view(task_inputs, output, f"task_{task.name}")
        inputs.update({f"{task.name}__{key}": value for key, value in task_inputs.items()})
        outputs[task.name] = output
        if getattr(task, "embedding", None) is not None:
            embed_models[task.name] = functional_view(
                task.embed_inputs(task_inputs), task.embedding, f"embed_{task.name}"
            )
    model = model_class(inputs=inputs, outputs=outputs, name="xtune_tasks")
    setattr(model, ADAPTER_ATTRIBUTE, encoder)
    return TaskGraph(model, task_models, embed_models)


def functional_view(inputs: dict[str, Any], output: Any, name: str) -> keras.Model:
    with warnings.catch_warnings():
        # A view's input keys ("token_ids") differ from its inputs' layer names
        # ("<task>__token_ids", unique across the whole model) on purpose.
        warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")
        return keras.Model(inputs, output, name=name)


def adapter_of(model: keras.Model) -> EncoderAdapter:
    """The encoder adapter of a classifier built by `build_classifier`."""
    adapter = getattr(model, ADAPTER_ATTRIBUTE, None)
    if adapter is None:
        raise ValueError(
            f"model {model.name!r} has no encoder adapter; build it with "
            "xtune.model.build_classifier"
        )
    return adapter


def initialize_logits_bias(
    model: keras.Model, labels: np.ndarray, multi_label: bool, layer: str = "logits"
) -> None:
    """Start the logits bias at the training labels' prior: log-odds per label (sigmoid
    losses) or log-frequency (softmax).

    With a zero bias every label starts at p = 0.5; the first, uniform "push every logit
    down" gradient then flows into the encoder and can flatten its features into the label
    prior (seen on the bundled sample: loss stuck at the prior's entropy, F1 0). Starting at
    the prior removes that gradient (Karpathy's "init well"; Lin et al. 2017, sec. 4.1).
    """
    frequency = np.clip(np.asarray(labels, dtype=np.float64).mean(axis=0), 1e-4, 1 - 1e-4)
    prior = np.log(frequency / (1 - frequency)) if multi_label else np.log(frequency)
    bias = model.get_layer(layer).bias
    bias.assign(prior.astype(np.float32))


def count_parameters(model: keras.Model) -> dict[str, int]:
    def total(variables: list[Any]) -> int:
        return int(sum(int(keras.ops.size(v)) for v in variables))

    return {
        "trainable": total(model.trainable_variables),
        "non_trainable": total(model.non_trainable_weights),
    }
