"""The heads' arguments checked by meaning, without Keras.

Each head's `check_arguments` is one of these functions (a head subclass's checks its own
arguments, then the MLP stack's), so the config (through the component catalog) and the
constructors refuse alike. Each raises `ValueError("ARGUMENT: ...")`.
"""

from __future__ import annotations

from typing import Any

from xtune.registry import check_number

MAX_WIDTH = 65536  # widest MLP layer, convolution or recurrent state a head accepts
# The names `keras.activations.get` knows (Keras 3.15); tests/heads checks them against Keras.
KERAS_ACTIVATIONS = (
    "celu",
    "elu",
    "exponential",
    "gelu",
    "glu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_shrink",
    "softmax",
    "softplus",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "sparsemax",
    "squareplus",
    "swish",
    "tanh",
    "tanh_shrink",
    "threshold",
)
POOLING_MODES = ("cls", "pooler", "mean", "max", "min")
# Modes that pool any `[b, t, h]` sequence; `pooler` is the encoder's own output.
SEQUENCE_POOLING_MODES = ("cls", "mean", "max", "min")
COMBINE_MODES = ("concat", "mean", "weighted")  # of the multi-layer head
RECURRENT_CELLS = ("lstm", "gru")
RNN_POOLING_MODES = ("mean", "max", "min")
# Sentence-BERT's classification objective concatenates (u, v, |u - v|, u * v), in that order.
PAIR_PARTS = ("u", "v", "abs_diff", "product")


def check_choice(name: str, value: Any, choices: Any) -> None:
    """A head argument that must be one of `choices` (a collection or a mapping's keys)."""
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of: {', '.join(choices)}")


def check_width(name: str, value: Any) -> None:
    check_number(name, value, 1, MAX_WIDTH, integer=True)


def check_activation(name: str, value: Any) -> None:
    """An activation Keras knows by name."""
    if not (isinstance(value, str) and value in KERAS_ACTIVATIONS):
        raise ValueError(f"{name}: {value!r} is not a Keras activation (e.g. gelu, relu, tanh)")


def pooling_modes(pooling: str | list[str], valid: tuple[str, ...] = POOLING_MODES) -> list[str]:
    """`"mean"` or `["mean", "max"]` -> a checked list of modes (concatenated in that order)."""
    if not isinstance(pooling, str | list | tuple):
        raise ValueError(f"pooling: expected a mode or a list of modes, got {pooling!r}")
    modes = [pooling] if isinstance(pooling, str) else list(pooling)
    if not modes:
        raise ValueError(f"pooling: give at least one mode; valid: {', '.join(valid)}")
    for mode in modes:
        if mode not in valid:
            raise ValueError(f"pooling: unknown mode {mode!r}; valid: {', '.join(valid)}")
    if len(set(modes)) != len(modes):
        raise ValueError(f"pooling: {modes!r} repeats a mode")
    return modes


def pair_parts(parts: Any) -> list[str]:
    """`"abs_diff"` or `["u", "v", ...]` -> a checked list of parts, in the order given."""
    if not isinstance(parts, str | list | tuple):
        raise ValueError(f"parts: expected a part or a list of parts, got {parts!r}")
    chosen = [parts] if isinstance(parts, str) else list(parts)
    if not chosen:
        raise ValueError(f"parts: give at least one part; valid: {', '.join(PAIR_PARTS)}")
    for part in chosen:
        if part not in PAIR_PARTS:
            raise ValueError(f"parts: unknown part {part!r}; valid: {', '.join(PAIR_PARTS)}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"parts: {chosen!r} repeats a part")
    return chosen


def check_head(
    units: list[int] | None = None,
    activation: str = "gelu",
    dropout: float = 0.1,
    layer_norm: bool = False,
    **kwargs: Any,
) -> None:
    """The MLP stack every head ends with (`Head`)."""
    if not isinstance(units, list | tuple | type(None)):
        raise ValueError(f"units: expected a list of layer widths, got {units!r}")
    for width in units or []:
        check_width("units", width)
    check_activation("activation", activation)
    check_number("dropout", dropout, 0.0, 1.0, open_high=True)
    if not isinstance(layer_norm, bool):
        raise ValueError(f"layer_norm: expected true or false, got {layer_norm!r}")


def check_pooling_head(pooling: str | list[str] = "pooler", **kwargs: Any) -> None:
    pooling_modes(pooling)
    check_head(**kwargs)


def check_multi_layer_head(
    last_layers: int = 4, pooling: str = "cls", combine: str = "concat", **kwargs: Any
) -> None:
    check_number("last_layers", last_layers, 1, 1000, integer=True)
    check_choice("pooling", pooling, SEQUENCE_POOLING_MODES)
    check_choice("combine", combine, COMBINE_MODES)
    check_head(**kwargs)


def check_recurrent_head(
    cell: str = "lstm",
    rnn_units: int = 128,
    bidirectional: bool = True,
    pooling: str | list[str] = "max",
    **kwargs: Any,
) -> None:
    check_choice("cell", cell, RECURRENT_CELLS)
    check_width("rnn_units", rnn_units)
    if not isinstance(bidirectional, bool):
        raise ValueError(f"bidirectional: expected true or false, got {bidirectional!r}")
    pooling_modes(pooling, RNN_POOLING_MODES)
    check_head(**kwargs)


def check_attention_head(attention_units: int | None = None, **kwargs: Any) -> None:
    if attention_units is not None:
        check_width("attention_units", attention_units)
    check_head(**kwargs)


def check_textcnn_head(
    filter_sizes: list[int] | tuple[int, ...] = (3, 4, 5),
    filters: int = 128,
    conv_activation: str = "relu",
    **kwargs: Any,
) -> None:
    sizes = list(filter_sizes) if isinstance(filter_sizes, list | tuple) else None
    if not sizes or not all(
        isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_WIDTH for s in sizes
    ):
        raise ValueError(
            f"filter_sizes: expected a non-empty list of positive integers, got {filter_sizes!r}"
        )
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"filter_sizes: {sizes!r} repeats a size")
    check_width("filters", filters)
    check_activation("conv_activation", conv_activation)
    check_head(**kwargs)


def check_pair_features(parts: Any = PAIR_PARTS, **kwargs: Any) -> None:
    pair_parts(parts)


def check_cosine_score(epsilon: float = 1e-8, **kwargs: Any) -> None:
    check_number("epsilon", epsilon, 0.0, 1.0, open_low=True)
