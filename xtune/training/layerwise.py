"""Parameter groups of a classifier (embeddings, layer i, pooler, head) and their LR multipliers.

Layer-wise learning-rate decay follows timm's formula with the embeddings as layer 0 and the
head on top: with `L` transformer layers and decay `d`,

    embeddings   lr * d ** (L + 1)
    layer i      lr * d ** (L - i)        (i = 0 .. L-1; the top layer gets lr * d)
    pooler       lr                       (the encoder's pooler, where the family has one)
    head         head_learning_rate       (everything outside the encoder; default lr)

so with `d < 1` every step down the encoder is a factor `d` slower. Each encoder weight's
group comes from its adapter (`EncoderAdapter.parameter_group`); the multipliers multiply the
scheduled learning rate.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import keras

from xtune.model import ENCODER_NAME, adapter_of
from xtune.registry import ConfigError

EMBEDDINGS, POOLER, HEAD = "embeddings", "pooler", "head"


def layer_group(index: int) -> str:
    return f"layer_{index}"


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
    return adapter_of(model).num_layers


def encoder_groups(model: keras.Model) -> dict[int, str]:
    """`id(variable)` -> group of every encoder weight, from the adapter's names.

    A weight of the encoder that belongs to no group is an error, so a new backbone shape
    cannot silently train at the wrong rate.
    """
    adapter = adapter_of(model)
    valid = set(group_names(adapter.num_layers)) - {HEAD}
    owner: dict[int, str] = {}
    for variable in encoder_of(model).weights:
        group = adapter.parameter_group(variable.path)
        if group not in valid:
            raise ValueError(
                f"encoder weight {variable.path!r} belongs to no known group (got {group!r}); "
                f"the {adapter.family} adapter's groups are {', '.join(sorted(valid))}"
            )
        owner.setdefault(id(variable), group)
    return owner


def group_names(num_layers: int) -> list[str]:
    """Groups bottom to top: embeddings, layer_0 .. layer_{L-1}, pooler, head."""
    return [EMBEDDINGS, *(layer_group(i) for i in range(num_layers)), POOLER, HEAD]


def parameter_groups(model: keras.Model) -> dict[str, list[Any]]:
    """Every weight of a classifier, by group: the encoder's by its adapter, the rest head."""
    groups: dict[str, list[Any]] = {name: [] for name in group_names(num_encoder_layers(model))}
    owner = encoder_groups(model)
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
