"""The classifier: encoder features -> head -> Dense(num_labels, name="logits")."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from xtune.encoders import LoadedEncoder
from xtune.heads import Head

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")
# The functional encoder sub-model's name; layer-wise learning rates and freezing look it up.
ENCODER_NAME = "encoder"


def encoder_features_model(backbone: keras.Model) -> keras.Model:
    """A functional view of the backbone that also exposes every transformer layer's output.

    It reuses the backbone's own layers (no new weights): keras-hub names the blocks
    `transformer_layer_{i}`, and each was called once when the backbone was built.
    """
    hidden_states = [
        backbone.get_layer(f"transformer_layer_{i}").output for i in range(backbone.num_layers)
    ]
    outputs = {
        "sequence_output": backbone.output["sequence_output"],
        "pooled_output": backbone.output["pooled_output"],
        "hidden_states": hidden_states,
    }
    return keras.Model(backbone.input, outputs, name=ENCODER_NAME)


@keras.saving.register_keras_serializable(package="xtune")
class TextClassifier(keras.Model):
    """Functional encoder -> head -> logits model; training-step variants live in subclasses."""


def build_classifier(
    encoder: LoadedEncoder,
    head: Head,
    num_labels: int,
    model_class: type = TextClassifier,
    **model_kwargs: Any,
) -> keras.Model:
    """`model_class` (a `TextClassifier` subclass, e.g. with its own `train_step`) is built
    on the functional graph with `model_kwargs`; every class yields the same weights."""
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
    features = dict(encoder_features_model(encoder.backbone)(inputs))
    features["padding_mask"] = inputs["padding_mask"]
    vector = head(features)
    # Logits stay float32 under mixed precision: losses and thresholds need the range.
    logits = keras.layers.Dense(num_labels, name="logits", dtype="float32")(vector)
    return model_class(inputs=inputs, outputs=logits, name="xtune_classifier", **model_kwargs)


def initialize_logits_bias(model: keras.Model, labels: np.ndarray, multi_label: bool) -> None:
    """Start the logits bias at the training labels' prior: log-odds per label (sigmoid
    losses) or log-frequency (softmax).

    With a zero bias every label starts at p = 0.5; the first, uniform "push every logit
    down" gradient then flows into the encoder and can flatten its features into the label
    prior (seen on the bundled sample: loss stuck at the prior's entropy, F1 0). Starting at
    the prior removes that gradient (Karpathy's "init well"; Lin et al. 2017, sec. 4.1).
    """
    frequency = np.clip(np.asarray(labels, dtype=np.float64).mean(axis=0), 1e-4, 1 - 1e-4)
    prior = np.log(frequency / (1 - frequency)) if multi_label else np.log(frequency)
    bias = model.get_layer("logits").bias
    bias.assign(prior.astype(np.float32))


def count_parameters(model: keras.Model) -> dict[str, int]:
    def total(variables: list[Any]) -> int:
        return int(sum(int(keras.ops.size(v)) for v in variables))

    return {
        "trainable": total(model.trainable_variables),
        "non_trainable": total(model.non_trainable_variables),
    }
