"""`tf.Module`s that hold a trained classifier for `tf.saved_model.save`: ids or raw strings in.

Both modules return the same outputs from every serving signature:

- `probabilities`: float32 `[batch, num_labels]`, the loss's `scores(logits)`;
- `predictions`: int32 `[batch, num_labels]`, 0/1 by the loss's decision rule and the run's
  tuned thresholds (when it has them);
- `labels`: string `[batch, k]`, the predicted label names, most probable first, padded with
  "" to the largest number of labels predicted for a row of the batch.

Only the raw `tf.Variable`s the traced functions capture are tracked, each exactly once: the
Keras model itself is closed over, not tracked. Tracking the `keras.Variable` wrappers as well
would store every weight twice (keras#23553, which `Model.export` and `ExportArchive` hit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from xtune.tasks.base import predicted_label_names

TEXT_SPEC = tf.TensorSpec([None], tf.string)
TOKEN_ID_SPEC = tf.TensorSpec([None, None], tf.int32)


class TokenIdServingModule(tf.Module):
    """A classifier on token ids: `serving_token_ids` and `metadata()`; no TF-Text ops.

    Args:
        run: a `TrainedRun` (`xtune.export.trained_run.load_trained_run`).
        metadata: JSON-able export metadata; its scalar and list fields are also returned, as
            constants, by the saved `metadata()` function.
        asset_files: files to ship in the SavedModel's `assets/` folder.
    """

    takes_text = False
    signature_names = ("serving_token_ids",)

    def __init__(self, run: Any, metadata: dict[str, Any], asset_files: list[Path]):
        super().__init__(name="xtune_classifier")
        model, loss = run.model, run.loss
        # The raw tf.Variables behind the keras.Variables (see the module docstring).
        self.model_weights = [weight.value for weight in model.weights]
        for variable in self.model_weights:
            if not isinstance(variable, tf.Variable):
                raise TypeError(f"expected a tf.Variable behind a Keras weight, got {variable!r}")
        self.asset_files = [tf.saved_model.Asset(str(path)) for path in asset_files]
        label_names = tf.constant(run.labels, tf.string)
        thresholds = None
        if run.thresholds is not None:
            thresholds = tf.constant(run.thresholds, tf.float32)

        def classify(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            logits = model(inputs, training=False)
            probabilities = tf.cast(loss.scores(logits), tf.float32)
            predictions = tf.cast(loss.decide(probabilities, thresholds), tf.int32)
            return {
                "probabilities": probabilities,
                "predictions": predictions,
                "labels": predicted_label_names(probabilities, predictions, label_names),
            }

        # The signature's arguments are the model's inputs (the encoder's `input_names`).
        if "segment_ids" in run.text_encoder.input_names:

            @tf.function(input_signature=[TOKEN_ID_SPEC] * 3, autograph=False)
            def serving_token_ids(
                token_ids: tf.Tensor, segment_ids: tf.Tensor, padding_mask: tf.Tensor
            ) -> dict[str, tf.Tensor]:
                return classify(
                    {
                        "token_ids": token_ids,
                        "segment_ids": segment_ids,
                        "padding_mask": padding_mask,
                    }
                )

        else:

            @tf.function(input_signature=[TOKEN_ID_SPEC] * 2, autograph=False)
            def serving_token_ids(
                token_ids: tf.Tensor, padding_mask: tf.Tensor
            ) -> dict[str, tf.Tensor]:
                return classify({"token_ids": token_ids, "padding_mask": padding_mask})

        constants = metadata_constants(metadata)

        @tf.function(input_signature=[], autograph=False)
        def metadata_function() -> dict[str, tf.Tensor]:
            return {name: tf.constant(value) for name, value in constants.items()}

        self.serving_token_ids = serving_token_ids
        self.metadata = metadata_function

    def signatures(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.signature_names}


class TextServingModule(TokenIdServingModule):
    """Adds raw-string signatures that tokenize in-graph with the run's own `TextEncoder`.

    `serving_default` and `tokenize` take `text`, plus `text_pair` when the run was trained
    on pairs: a pair model always gets both, as in training. Loading needs
    `import tensorflow_text` first (it registers the tokenizer ops).
    """

    takes_text = True
    signature_names = ("serving_default", "tokenize", "serving_token_ids")

    def __init__(self, run: Any, metadata: dict[str, Any], asset_files: list[Path]):
        super().__init__(run, metadata, asset_files)
        text_encoder = run.text_encoder
        # Tracked as an attribute, so the SavedModel keeps the tokenizer's resources
        # (SentencePiece models, BPE lookup tables); a closure alone leaves them untracked.
        self.text_tokenizer = text_encoder.tokenizer
        classify = self.serving_token_ids
        # Both signatures call one traced `tokenize`, so its graph (with the tokenizer's model
        # built from its vocabulary) is stored once.
        if run.has_pair:

            @tf.function(input_signature=[TEXT_SPEC, TEXT_SPEC], autograph=False)
            def tokenize(text: tf.Tensor, text_pair: tf.Tensor) -> dict[str, tf.Tensor]:
                return text_encoder.pad(text_encoder.encode(text, text_pair))

            @tf.function(input_signature=[TEXT_SPEC, TEXT_SPEC], autograph=False)
            def serving_default(text: tf.Tensor, text_pair: tf.Tensor) -> dict[str, tf.Tensor]:
                return classify(**tokenize(text, text_pair))

        else:

            @tf.function(input_signature=[TEXT_SPEC], autograph=False)
            def tokenize(text: tf.Tensor) -> dict[str, tf.Tensor]:
                return text_encoder.pad(text_encoder.encode(text))

            @tf.function(input_signature=[TEXT_SPEC], autograph=False)
            def serving_default(text: tf.Tensor) -> dict[str, tf.Tensor]:
                return classify(**tokenize(text))

        self.tokenize = tokenize
        self.serving_default = serving_default


def metadata_constants(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata fields a graph constant can hold: strings, numbers, bools and flat lists."""
    constants = {}
    for name, value in metadata.items():
        if value is None or isinstance(value, dict):
            continue
        if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
            continue
        constants[name] = value
    return constants
