"""Every loss checks its arguments in `check_arguments` (called by the config for every run
before training); constructing the loss checks the same way."""

from __future__ import annotations

import pytest

from xtune.losses import LOSSES, BinaryCrossentropy, FocalCrossentropy, SoftmaxCrossentropy

BAD = [
    (FocalCrossentropy, {"gamma": -1.0}, r"gamma: expected a number in \[0.0, 100.0\]"),
    (FocalCrossentropy, {"alpha": 2.0}, r"alpha: expected a number in \[0.0, 1.0\]"),
    (FocalCrossentropy, {"gamma": float("nan")}, "gamma"),
    (BinaryCrossentropy, {"pos_weight": []}, "pos_weight: expected a list"),
    (BinaryCrossentropy, {"pos_weight": [1.0, 0.0]}, "pos_weight: expected a number > 0.0"),
    (SoftmaxCrossentropy, {"label_smoothing": 1.5}, "label_smoothing"),
    (BinaryCrossentropy, {"label_smoothing": -0.1}, "label_smoothing"),
]


@pytest.mark.parametrize("cls, arguments, message", BAD, ids=[str(b[1]) for b in BAD])
def test_check_arguments_and_the_constructor_refuse_alike(cls, arguments, message):
    with pytest.raises(ValueError, match=message):
        cls.check_arguments(**arguments)
    with pytest.raises(ValueError, match=message):
        cls(**arguments)


def test_every_loss_accepts_its_defaults_and_label_smoothing():
    for name in LOSSES.names():
        LOSSES.check(name, {"label_smoothing": 0.1})
