"""Parameter groups of a classifier (embeddings, layer i, pooler, head) and their LR multipliers.

Layer-wise learning-rate decay follows timm's formula with the embeddings as layer 0 and the
head on top: with `L` transformer layers and decay `d`,

    embeddings   lr * d ** (L + 1)
    layer i      lr * d ** (L - i)        (i = 0 .. L-1; the top layer gets lr * d)
    pooler       lr                       (the encoder's last block: `pooled_dense`)
    head         head_learning_rate       (everything outside the encoder; default lr)

so with `d < 1` every step down the encoder is a factor `d` slower. The multipliers are
resolved from keras-hub's layer names and multiply the scheduled learning rate.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import keras

from xtune.config import ConfigError
from xtune.model import ENCODER_NAME

EMBEDDING_LAYERS = (
    "token_embedding",
    "position_embedding",
    "segment_embedding",
    "embeddings_layer_norm",
)
POOLER_LAYER = "pooled_dense"
EMBEDDINGS, POOLER, HEAD = "embeddings", "pooler", "head"


def layer_group(index: int) -> str:
    return f"layer_{index}"


def transformer_layer_name(index: int) -> str:
    """keras-hub's name for the index-th transformer block (0 = closest to the embeddings)."""
    return f"transformer_layer_{index}"


def encoder_of(model: keras.Model) -> keras.Model:
    """The functional encoder sub-model of a classifier built by `build_classifier`."""
    try:
        return model.get_layer(ENCODER_NAME)
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no {ENCODER_NAME!r} sub-model; build it with "
            "xtune.model.build_classifier"
        ) from None


def num_encoder_layers(model: keras.Model) -> int:
    names = {layer.name for layer in encoder_of(model).layers}
    count = 0
    while transformer_layer_name(count) in names:
        count += 1
    return count


def group_names(num_layers: int) -> list[str]:
    """Groups bottom to top: embeddings, layer_0 .. layer_{L-1}, pooler, head."""
    return [EMBEDDINGS, *(layer_group(i) for i in range(num_layers)), POOLER, HEAD]


def parameter_groups(model: keras.Model) -> dict[str, list[Any]]:
    """Every weight of a classifier, by group; the encoder's are found by keras-hub layer name.

    A weight of the encoder that belongs to none of the known layers is an error, so a new
    backbone shape cannot silently train at the wrong rate.
    """
    encoder = encoder_of(model)
    num_layers = num_encoder_layers(model)
    groups: dict[str, list[Any]] = {name: [] for name in group_names(num_layers)}
    owner: dict[int, str] = {}
    layer_names = {name: EMBEDDINGS for name in EMBEDDING_LAYERS}
    layer_names.update({transformer_layer_name(i): layer_group(i) for i in range(num_layers)})
    layer_names[POOLER_LAYER] = POOLER
    for layer in encoder.layers:
        group = layer_names.get(layer.name)
        for variable in layer.weights:
            if group is None:
                raise ValueError(
                    f"encoder weight {variable.path!r} (layer {layer.name!r}) belongs to no "
                    f"known group; expected layers {', '.join(layer_names)}"
                )
            owner.setdefault(id(variable), group)
    for variable in model.weights:
        groups[owner.get(id(variable), HEAD)].append(variable)
    return groups


def group_multipliers(
    num_layers: int, layerwise_lr_decay: float, head_multiplier: float
) -> dict[str, float]:
    """Learning-rate multiplier of each group (see the module docstring)."""
    if not 0.0 < layerwise_lr_decay <= 1.0:
        raise ConfigError(
            f"optimizer.layerwise_lr_decay must be in (0, 1]; got {layerwise_lr_decay}"
        )
    multipliers = {EMBEDDINGS: layerwise_lr_decay ** (num_layers + 1)}
    for i in range(num_layers):
        multipliers[layer_group(i)] = layerwise_lr_decay ** (num_layers - i)
    multipliers[POOLER] = 1.0
    multipliers[HEAD] = head_multiplier
    return multipliers


def variable_multipliers(
    model: keras.Model, layerwise_lr_decay: float, head_multiplier: float
) -> dict[str, float]:
    """Variable path -> learning-rate multiplier, for every weight of `model`."""
    groups = parameter_groups(model)
    multipliers = group_multipliers(num_encoder_layers(model), layerwise_lr_decay, head_multiplier)
    paths = Counter(v.path for variables in groups.values() for v in variables)
    duplicated = sorted(path for path, count in paths.items() if count > 1)
    if duplicated:
        raise ValueError(
            f"variable paths are not unique, so learning rates cannot be assigned by path: "
            f"{', '.join(duplicated[:5])}"
        )
    return {
        variable.path: multipliers[group]
        for group, variables in groups.items()
        for variable in variables
    }


def learning_rate_table(model: keras.Model, multipliers: dict[str, float], peak: float) -> str:
    """One line per group: trainable / total parameters, multiplier, peak learning rate."""
    lines = [f"  {'group':<12}{'trainable':>12}{'params':>12}{'multiplier':>12}{'peak lr':>11}"]
    for group, variables in parameter_groups(model).items():
        if not variables:
            continue
        total = sum(int(keras.ops.size(v)) for v in variables)
        trainable = sum(int(keras.ops.size(v)) for v in variables if v.trainable)
        multiplier = multipliers.get(variables[0].path, 1.0)
        rate = f"{peak * multiplier:.3g}" if trainable else "frozen"
        lines.append(f"  {group:<12}{trainable:>12,}{total:>12,}{multiplier:>12.4g}{rate:>11}")
    return "\n".join(lines)
