"""The `tf.Module` that holds a trained run (one task or many) for `tf.saved_model.save`.

Signatures per task (names from `xtune.tasks.signatures`: a config without `tasks:` has
`serving_default`, `tokenize`, `serving_token_ids`; a named task `T` has `T`, `T_tokenize`,
`T_token_ids`, `T_embed`, and the first task's are also `serving_default`, ...):

- serve: `text` (and `text_pair` for a task trained on pairs) -> `Task.serving_outputs`, with
  the task's tuned thresholds where it has them. A label task returns
  `probabilities` float32 `[batch, num_labels]` (the loss's `scores(logits)`), `predictions`
  int32 `[batch, num_labels]` (0/1 by the decision rule) and `labels` string `[batch, k]`
  (the predicted names, most probable first, padded with ""); a score task returns `score`
  float32 `[batch]` in the task's label units;
- every raw-string signature first applies the task's `data.prepare` (the run's
  preparation.json) as graph ops (`xtune.data.preparation_graph`), as training did;
- tokenize: the same inputs -> the padded ids the model takes (`token_ids`, `segment_ids` for
  encoders that take them, `padding_mask`; a bi-encoder's two sides prefixed `a_`, `b_`);
- token_ids: those ids -> the serve outputs; no TF-Text ops;
- embed (bi-encoders): `text` -> `embedding`, the L2-normalised sentence vector.

Only the raw `tf.Variable`s the traced functions capture are tracked, each exactly once: the
Keras models are closed over, not tracked. Tracking the `keras.Variable` wrappers as well
would store every weight twice (keras#23553, which `Model.export` and `ExportArchive` hit).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

from xtune.data.preparation_graph import GraphPreparation
from xtune.tasks.signatures import EMBED, SERVING_DEFAULT, TOKEN_IDS, TOKENIZE

TOKEN_ID_SPEC = tf.TensorSpec([None, None], tf.int32)


def named_specs(names: list[str], dtype: tf.DType, rank: int) -> list[tf.TensorSpec]:
    """Specs whose names become the signature's input names (for `*args` functions)."""
    return [tf.TensorSpec([None] * rank, dtype, name=name) for name in names]


def text_input_names(task: Any) -> list[str]:
    """`text`, and `text_pair` for a task trained on pairs (cross- or bi-encoded)."""
    return ["text", "text_pair"] if task.config.data.text_pair else ["text"]


class ServingModule(tf.Module):
    """A run's signatures (see the module docstring) and `metadata()`.

    Args:
        run: a `xtune.tasks.run_folder.LoadedRun`.
        signature_names: each task's signature names by role (`task_signature_names`).
        metadata: JSON-able export metadata; its scalar and flat list fields are also
            returned, as constants, by the saved `metadata()` function.
        asset_files: files to ship in the SavedModel's `assets/` folder.
        text_inputs: False leaves out every raw-string signature (and so the TF-Text ops):
            only the token-id signatures remain.
    """

    def __init__(
        self,
        run: Any,
        signature_names: dict[str, dict[str, str]],
        metadata: dict[str, Any],
        asset_files: list[Path],
        text_inputs: bool = True,
    ):
        super().__init__(name="xtune_model")
        # The raw tf.Variables behind the keras.Variables (see the module docstring).
        self.model_weights = [weight.value for weight in run.graph.model.weights]
        for variable in self.model_weights:
            if not isinstance(variable, tf.Variable):
                raise TypeError(f"expected a tf.Variable behind a Keras weight, got {variable!r}")
        self.asset_files = [tf.saved_model.Asset(str(path)) for path in asset_files]
        if text_inputs:
            # Tracked as an attribute, so the SavedModel keeps the tokenizer's resources
            # (SentencePiece models, BPE lookup tables); a closure alone leaves them untracked.
            self.text_tokenizer = run.encoder.tokenizer
        # Tracked as an attribute, so the SavedModel keeps each preparation's sentence table.
        self.text_preparations = {
            name: GraphPreparation(preparation)
            for name, preparation in run.preparations.items()
            if text_inputs and not preparation.is_identity()
        }
        self.functions: dict[str, Any] = {}
        for task in run.tasks:
            names = signature_names[task.name]
            prepare = self.text_preparations.get(task.name)
            functions = task_functions(run, task, text_inputs, prepare)
            self.functions.update({names[role]: functions[role] for role in functions})
        if run.config.tasks is not None:
            self.add_aliases(run, signature_names)
        constants = metadata_constants(metadata)

        @tf.function(input_signature=[], autograph=False)
        def metadata_function() -> dict[str, tf.Tensor]:
            return {name: tf.constant(value) for name, value in constants.items()}

        self.metadata = metadata_function

    def add_aliases(self, run: Any, signature_names: dict[str, dict[str, str]]) -> None:
        """`serving_default`, `tokenize`, `serving_token_ids`: the first task's; `embed`: the
        only bi-encoder's embedding."""
        first = signature_names[run.tasks[0].name]
        for alias, role in (
            (SERVING_DEFAULT, "serve"),
            (TOKENIZE, "tokenize"),
            (TOKEN_IDS, "token_ids"),
        ):
            if first[role] in self.functions:
                self.functions[alias] = self.functions[first[role]]
        embedders = [names["embed"] for names in signature_names.values() if "embed" in names]
        if len(embedders) == 1 and embedders[0] in self.functions:
            self.functions[EMBED] = self.functions[embedders[0]]

    def signatures(self) -> dict[str, Any]:
        return dict(self.functions)


def task_functions(
    run: Any, task: Any, text_inputs: bool, prepare: Callable | None = None
) -> dict[str, Callable]:
    """One task's traced functions by role (see the module docstring); `prepare`: the task's
    text preparation as graph ops, applied to every raw string (None: none)."""
    text_encoder = run.text_encoders[task.name]
    task_model = run.graph.task_models[task.name]
    thresholds = run.thresholds.get(task.name)
    if thresholds is not None:
        thresholds = tf.constant(thresholds, tf.float32)
    id_names = task.input_names(run.encoder)

    # The signature's arguments are the task model's inputs, named as the model names them.
    @tf.function(input_signature=named_specs(id_names, tf.int32, 2), autograph=False)
    def token_ids(*ids: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = task_model(dict(zip(id_names, ids, strict=True)), training=False)
        return task.serving_outputs(outputs, thresholds)

    functions = {"token_ids": token_ids}
    if not text_inputs:
        return functions
    two_sides = len(task.sides) == 2
    text_names = text_input_names(task)
    text_specs = named_specs(text_names, tf.string, 1)

    def encode(text: tf.Tensor, pair: tf.Tensor | None = None, prefix: str = "") -> dict:
        if prepare is not None:
            text = prepare(text)
            pair = None if pair is None else prepare(pair)
        encoded = text_encoder.pad(text_encoder.encode(text, pair))
        return {f"{prefix}{name}": value for name, value in encoded.items()}

    # serve calls one traced `tokenize` and one traced `token_ids`, so the graphs of the
    # tokenizer and of the model are each stored once.
    @tf.function(input_signature=text_specs, autograph=False)
    def tokenize(*texts: tf.Tensor) -> dict[str, tf.Tensor]:
        if two_sides:
            return {**encode(texts[0], prefix="a_"), **encode(texts[1], prefix="b_")}
        return encode(*texts)

    @tf.function(input_signature=text_specs, autograph=False)
    def serve(*texts: tf.Tensor) -> dict[str, tf.Tensor]:
        encoded = tokenize(*texts)
        return token_ids(*(encoded[name] for name in id_names))

    functions.update(serve=serve, tokenize=tokenize)
    embed_model = run.graph.embed_models.get(task.name)
    if embed_model is not None:

        @tf.function(input_signature=named_specs(["text"], tf.string, 1), autograph=False)
        def embed(text: tf.Tensor) -> dict[str, tf.Tensor]:
            vector = tf.cast(embed_model(encode(text, prefix="a_"), training=False), tf.float32)
            return {"embedding": tf.math.l2_normalize(vector, axis=-1)}

        functions["embed"] = embed
    return functions


def metadata_constants(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata fields a graph constant can hold: strings, numbers, bools and flat lists."""
    constants = {}
    for name, value in metadata.items():
        if value is None or isinstance(value, dict):
            continue
        if isinstance(value, list) and (
            not value or any(isinstance(item, dict | list) for item in value)
        ):
            continue
        constants[name] = value
    return constants
