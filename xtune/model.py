"""The classifier: encoder features -> head -> Dense(num_labels, name="logits")."""

from __future__ import annotations

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


@keras.saving.register_keras_serializable(package="xtune")
class TextClassifier(keras.Model):
    """Functional encoder -> head -> logits model; training-step variants live in subclasses."""


def build_classifier(
    encoder: EncoderAdapter,
    head: Head,
    num_labels: int,
    model_class: type = TextClassifier,
    **model_kwargs: Any,
) -> keras.Model:
    """`model_class` (a `TextClassifier` subclass, e.g. with its own `train_step`) is built
    on the functional graph with `model_kwargs`; every class yields the same weights. The
    model's inputs are the adapter's `input_names`; the adapter stays reachable as
    `model.encoder_adapter` (`adapter_of`)."""
    inputs = model_inputs(encoder.input_names)
    features = dict(encoder_features_model(encoder)(inputs))
    features["padding_mask"] = inputs["padding_mask"]
    vector = head(features)
    # Logits stay float32 under mixed precision: losses and thresholds need the range.
    logits = keras.layers.Dense(num_labels, name="logits", dtype="float32")(vector)
    model = model_class(inputs=inputs, outputs=logits, name="xtune_classifier", **model_kwargs)
    setattr(model, ADAPTER_ATTRIBUTE, encoder)
    return model


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
        "non_trainable": total(model.non_trainable_variables),
    }
