"""Every head checks its arguments in `check_arguments`, which the config calls for every run
before training and which builds no layer; constructing the head checks the same way."""

from __future__ import annotations

import keras
import pytest

from xtune.heads import (
    HEADS,
    AttentionPoolingHead,
    MultiLayerPoolingHead,
    PoolingHead,
    RecurrentHead,
    TextCNNHead,
)

BAD = [
    (MultiLayerPoolingHead, {"combine": "sum"}, "combine: 'sum' is not one of: concat"),
    (MultiLayerPoolingHead, {"last_layers": True}, "last_layers"),
    (TextCNNHead, {"filter_sizes": []}, "filter_sizes: expected a non-empty list"),
    (TextCNNHead, {"filter_sizes": [3, True]}, "filter_sizes"),
    (TextCNNHead, {"filters": 0}, "filters: expected an integer in"),
    (TextCNNHead, {"conv_activation": "relux"}, "conv_activation: 'relux' is not a Keras"),
    (PoolingHead, {"pooling": "avg"}, "pooling: unknown mode 'avg'; valid: cls, pooler"),
    (PoolingHead, {"pooling": ["mean", "mean"]}, "repeats a mode"),
    (PoolingHead, {"pooling": 3}, "pooling: expected a mode or a list of modes"),
    (PoolingHead, {"units": [256, -1]}, "units: expected an integer in"),
    (PoolingHead, {"units": 256}, "units: expected a list"),
    (PoolingHead, {"dropout": -0.1}, r"dropout: expected a number in \[0.0, 1.0\)"),
    (PoolingHead, {"activation": "nope"}, "activation: 'nope' is not a Keras activation"),
    (PoolingHead, {"layer_norm": "yes"}, "layer_norm: expected true or false"),
    (RecurrentHead, {"pooling": "cls"}, "pooling: unknown mode 'cls'; valid: mean, max, min"),
    (RecurrentHead, {"rnn_units": 0}, "rnn_units"),
    (AttentionPoolingHead, {"attention_units": 0}, "attention_units"),
]


@pytest.mark.parametrize("cls, arguments, message", BAD, ids=[str(b[1]) for b in BAD])
def test_check_arguments_and_the_constructor_refuse_alike(cls, arguments, message):
    with pytest.raises(ValueError, match=message):
        cls.check_arguments(**arguments)
    with pytest.raises(ValueError, match=message):
        cls(**arguments)


def test_check_arguments_builds_no_layer(monkeypatch):
    def no_layers(*args, **kwargs):
        raise AssertionError("check_arguments built a layer")

    monkeypatch.setattr(keras.layers.Layer, "__init__", no_layers)
    for name in HEADS.names():
        HEADS.check(name, {"units": [8], "dropout": 0.2})
    TextCNNHead.check_arguments(filter_sizes=[2, 3], filters=4)
    MultiLayerPoolingHead.check_arguments(last_layers=2, combine="weighted")


def test_the_activation_names_are_those_keras_knows():
    """`xtune.heads.checks` checks activations without Keras, against a list of names: the
    public names of `keras.activations` that `keras.activations.get` accepts."""
    from xtune.heads.checks import KERAS_ACTIVATIONS

    def known(name: str) -> bool:
        try:
            return keras.activations.get(name) is not None
        except ValueError:
            return False

    names = [name for name in dir(keras.activations) if not name.startswith("_")]
    assert sorted(KERAS_ACTIVATIONS) == sorted(filter(known, names))
