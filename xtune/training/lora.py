"""LoRA (Hu et al., 2021) on the encoder's projections, and adapter files (LoRA + head weights).

keras-hub's `Backbone.enable_lora(rank, target_layer_names)` takes no alpha, so this calls
Keras' `EinsumDense.enable_lora(rank, lora_alpha)` / `Dense.enable_lora` on the target layers
itself: the delta is `(alpha / rank) * A @ B`, with B starting at zero.

Saving: Keras merges the delta into the kernel in `save_weights` (`EinsumDense.
save_own_variables`), so a run folder's `model.weights.h5` loads into a plain classifier.
`save_adapter` writes only the trainable weights (LoRA matrices + head) for a base encoder
that is available elsewhere; `load_adapter` puts them back into a model prepared the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np

from xtune.model import adapter_of
from xtune.registry import ConfigError
from xtune.training.layerwise import layer_group

LORA_VARIABLE_NAMES = ("lora_kernel_a", "lora_kernel_b")
ADAPTER_FILE = "adapter.npz"


def enable_lora(
    model: keras.Model,
    rank: int,
    alpha: float | None = None,
    targets: Iterable[str] = ("query", "value"),
    layer_indices: Iterable[int] | None = None,
) -> list[str]:
    """Add LoRA matrices to the target projections of the given transformer layers (all by
    default); returns the paths of the adapted layers. The adapter finds the projections
    (`EncoderAdapter.lora_layers`); trainability is set separately
    (`xtune.training.freezing.set_trainable`)."""
    adapter = adapter_of(model)
    indices = range(adapter.num_layers) if layer_indices is None else layer_indices
    groups = {layer_group(index) for index in indices}
    try:
        layers = adapter.lora_layers(list(targets))
    except ValueError as error:
        raise ConfigError(f"finetune.lora_targets: {error}") from None
    adapted = []
    for layer in layers:
        if adapter.parameter_group(layer.kernel.path) in groups:
            layer.enable_lora(rank, lora_alpha=alpha)
            adapted.append(layer.path)
    return sorted(adapted)


def adapter_variables(model: keras.Model) -> list[keras.Variable]:
    """What an adapter file holds: the trainable weights (LoRA matrices and the head)."""
    return list(model.trainable_weights)


def save_adapter(model: keras.Model, path: str | Path) -> None:
    variables = adapter_variables(model)
    arrays = {f"w{i}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(variables)}
    paths = json.dumps([v.path for v in variables])
    with Path(path).open("wb") as file:
        np.savez(file, paths=np.array(paths), **arrays)


def load_adapter(model: keras.Model, path: str | Path) -> None:
    """Assign an adapter file's weights to `model`, which must have LoRA enabled (and the same
    weights trainable) as when it was saved; the encoder's other weights stay as they are."""
    variables = adapter_variables(model)
    with np.load(Path(path)) as stored:
        paths = json.loads(str(stored["paths"]))
        if len(paths) != len(variables):
            raise ValueError(
                f"{path}: holds {len(paths)} weights but the model trains {len(variables)}; "
                "enable LoRA with the same finetune settings before loading"
            )
        values = [stored[f"w{i}"] for i in range(len(paths))]
    for variable, value, saved_path in zip(variables, values, paths, strict=True):
        if tuple(variable.shape) != value.shape:
            raise ValueError(
                f"{path}: weight {saved_path} has shape {value.shape}, the model's "
                f"{variable.path} has {tuple(variable.shape)}"
            )
        variable.assign(value)
