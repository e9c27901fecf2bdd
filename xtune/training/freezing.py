"""Which encoder weights train: frozen encoder or embeddings, top-N layers, head-only stages,
and re-initialized top layers (Zhang et al., 2021, "Revisiting Few-sample BERT Fine-tuning").

Trainability is set from scratch on every call, so a staged run (head alone, then the
configured set) can switch between the two without leftovers from the previous stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras

from xtune.encoders.keras_hub_internals import nested_layers
from xtune.encoders.prompt_injection import PREFIX_VARIABLES, PROMPT_VARIABLE
from xtune.registry import ConfigError
from xtune.training.layerwise import (
    EMBEDDINGS,
    POOLER,
    encoder_groups,
    encoder_of,
    layer_group,
    num_encoder_layers,
)
from xtune.training.lora import LORA_VARIABLE_NAMES

# Bias terms as Keras names them: Dense / EinsumDense `bias`, LayerNormalization `beta`.
BIAS_VARIABLE_NAMES = ("bias", "beta")

if TYPE_CHECKING:  # the config imports components, not the other way round
    from xtune.config_schema import FinetuneConfig


def check_finetune(finetune: FinetuneConfig, num_layers: int, epochs: int) -> None:
    """Errors a config can cause that need the encoder's depth or the epoch count."""

    def bad(key: str, expected: str) -> ConfigError:
        value = getattr(finetune, key)
        return ConfigError(f"finetune.{key}: {value!r} is not valid; expected {expected}")

    if finetune.train_top_layers is not None and not 0 <= finetune.train_top_layers <= num_layers:
        raise bad("train_top_layers", f"0..{num_layers} (the encoder has {num_layers} layers)")
    if not 0 <= finetune.reinit_top_layers <= num_layers:
        raise bad("reinit_top_layers", f"0..{num_layers} (the encoder has {num_layers} layers)")
    if not 0 <= finetune.frozen_epochs < max(epochs, 1):
        raise bad("frozen_epochs", f"0..{epochs - 1}: fewer than training.epochs ({epochs})")
    if finetune.lora_rank is not None:
        if finetune.lora_rank < 1:
            raise bad("lora_rank", "an integer >= 1, or null for no LoRA")
        if finetune.freeze_encoder:
            raise ConfigError(
                "finetune: lora_rank and freeze_encoder exclude each other (LoRA trains "
                "adapters inside the encoder); use frozen_epochs for a head-only first stage"
            )
        if not finetune.lora_targets:
            raise bad("lora_targets", "a non-empty list of layer names, e.g. [query, value]")
    for key in ("prompt_length", "prefix_length"):
        if getattr(finetune, key) is not None and getattr(finetune, key) < 0:
            raise bad(key, "an integer >= 0, or null for none")


def trainable_layer_indices(finetune: FinetuneConfig, num_layers: int) -> range:
    """Transformer layers whose weights (or LoRA adapters) train."""
    if finetune.freeze_encoder:
        return range(0)
    if finetune.train_top_layers is not None:
        return range(num_layers - finetune.train_top_layers, num_layers)
    return range(num_layers)


def set_trainable(model: keras.Model, finetune: FinetuneConfig, head_only: bool = False) -> None:
    """Set which encoder weights train; the head always trains.

    `head_only` freezes the whole encoder (the first stage of `frozen_epochs`). Otherwise:
    `freeze_encoder` freezes it all; `train_top_layers: N` freezes the embeddings and all but
    the top N transformer layers (the pooler trains); `freeze_embeddings` freezes the
    embedding tables and their LayerNorm. With LoRA (`lora_rank`) the encoder's own weights
    are frozen and only the LoRA matrices of the trainable layers train (biases too stay
    frozen, as PEFT's `bias="none"`). Likewise with prompt / prefix tuning only the soft
    prompt / prefixes train, and with `bitfit` only the biases (Ben Zaken et al., 2022,
    "BitFit": every bias term, LayerNorm's `beta` included); these combine. Groups are the
    adapter's (`parameter_group`).
    """
    encoder = encoder_of(model)
    encoder.trainable = True  # undo any previous stage, including LoRA's frozen kernels
    if head_only or finetune.freeze_encoder:
        encoder.trainable = False
        return
    num_layers = num_encoder_layers(model)
    trainable_layers = trainable_layer_indices(finetune, num_layers)
    frozen = {layer_group(i) for i in range(num_layers) if i not in trainable_layers}
    if finetune.freeze_embeddings or finetune.train_top_layers is not None:
        frozen.add(EMBEDDINGS)
    kept = parameter_efficient_names(finetune)
    if kept:
        freeze_all_but(encoder, kept)
    groups = encoder_groups(model)
    for variable in encoder.weights:
        if groups[id(variable)] in frozen:
            variable.trainable = False


def freeze_all_but_lora(encoder: keras.Model) -> None:
    freeze_all_but(encoder, set(LORA_VARIABLE_NAMES))


def parameter_efficient_names(finetune: FinetuneConfig) -> set[str]:
    """Names of the encoder variables that alone train under the parameter-efficient
    settings (LoRA, prompt, prefix, BitFit); empty when none is set."""
    names: set[str] = set()
    if finetune.lora_rank is not None:
        names.update(LORA_VARIABLE_NAMES)
    if finetune.prompt_length is not None:
        names.add(PROMPT_VARIABLE)
    if finetune.prefix_length is not None:
        names.update(PREFIX_VARIABLES)
    if finetune.bitfit:
        names.update(BIAS_VARIABLE_NAMES)
    return names


def freeze_all_but(encoder: keras.Model, names: set[str]) -> None:
    # Per variable: a layer's flag would reach the adapters of the layers inside it.
    for variable in encoder.weights:
        variable.trainable = variable.name in names


def reinitialize_top_layers(model: keras.Model, count: int) -> list[str]:
    """Re-draw the weights of the top `count` transformer layers and the pooler (where the
    family has one).

    Each weight is re-drawn with the initializer its own layer was built with
    (`kernel_initializer`, `bias_initializer`, `gamma_initializer`, `beta_initializer`), from
    Keras' global seed. Returns the re-initialized parameter groups.
    """
    if count == 0:
        return []
    num_layers = num_encoder_layers(model)
    targets = [layer_group(i) for i in range(num_layers - count, num_layers)] + [POOLER]
    groups = encoder_groups(model)
    redrawn = reinitialize_variables(
        encoder_of(model), {v for v, group in groups.items() if group in targets}
    )
    return [group for group in targets if group in {groups[v] for v in redrawn}]


def reinitialize_variables(encoder: keras.Model, chosen: set[int]) -> set[int]:
    """Re-draw the variables whose `id` is in `chosen`; returns those done."""
    done: set[int] = set()
    # Innermost layers first: their initializers are the ones their weights were built with.
    for sublayer in reversed([encoder, *nested_layers(encoder)]):
        for variable in sublayer.weights:
            if id(variable) in done or id(variable) not in chosen:
                continue
            initializer = initializer_of(sublayer, variable)
            variable.assign(initializer(variable.shape, dtype=variable.dtype))
            done.add(id(variable))
    return done


def initializer_of(layer: keras.layers.Layer, variable: Any) -> Any:
    attribute = f"{variable.name}_initializer"
    initializer = getattr(layer, attribute, None)
    if initializer is None:
        raise ValueError(
            f"cannot re-initialize {variable.path!r}: layer {layer.name!r} has no {attribute}"
        )
    return keras.initializers.get(initializer)
