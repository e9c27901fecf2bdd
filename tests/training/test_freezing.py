"""Frozen weights stay bitwise the same through training; re-initialized layers are redrawn."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.training.conftest import (
    NUM_LAYERS,
    bce,
    changed_paths,
    snapshot,
    tiny_batch,
    tiny_classifier,
)
from xtune.config import FinetuneConfig
from xtune.model import count_parameters
from xtune.training.freezing import check_finetune, reinitialize_top_layers, set_trainable
from xtune.training.layerwise import parameter_groups
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.schedules import SCHEDULES

ENCODER_LAYERS = [f"layer_{i}" for i in range(NUM_LAYERS)]


def train_steps(model, steps: int = 2) -> None:
    optimizer = OPTIMIZERS.build({"name": "adamw", "learning_rate": 1e-2})(
        model, SCHEDULES.build("constant"), 10
    )
    model.compile(optimizer=optimizer, loss=bce(), run_eagerly=True)
    x, y = tiny_batch()
    for _ in range(steps):
        model.train_on_batch(x, y)


def changed_groups(model, before) -> set[str]:
    changed = changed_paths(before, model)
    return {
        group
        for group, variables in parameter_groups(model).items()
        if any(v.path in changed for v in variables)
    }


def group_sizes(model, groups) -> int:
    members = parameter_groups(model)
    return sum(int(np.prod(v.shape)) for group in groups for v in members[group])


@pytest.mark.parametrize(
    ("finetune", "trained"),
    [
        (FinetuneConfig(freeze_encoder=True), {"head"}),
        (FinetuneConfig(freeze_embeddings=True), {*ENCODER_LAYERS, "pooler", "head"}),
        (FinetuneConfig(train_top_layers=1), {"layer_2", "pooler", "head"}),
        (FinetuneConfig(train_top_layers=0), {"pooler", "head"}),
    ],
    ids=["freeze_encoder", "freeze_embeddings", "train_top_1", "train_top_0"],
)
def test_only_the_configured_groups_change(finetune, trained):
    model = tiny_classifier()
    set_trainable(model, finetune)
    assert count_parameters(model)["trainable"] == group_sizes(model, trained)
    before = snapshot(model)
    train_steps(model)
    assert changed_groups(model, before) == trained


def test_staged_training_unfreezes_after_the_head_only_stage():
    model = tiny_classifier()
    finetune = FinetuneConfig(train_top_layers=2, frozen_epochs=1)
    start = snapshot(model)
    set_trainable(model, finetune, head_only=True)
    train_steps(model)
    assert changed_groups(model, start) == {"head"}
    after_head = snapshot(model)
    set_trainable(model, finetune)  # a new optimizer and compile, as the trainer does
    train_steps(model)
    assert changed_groups(model, after_head) == {"layer_1", "layer_2", "pooler", "head"}
    assert changed_groups(model, start) == {"layer_1", "layer_2", "pooler", "head"}


def test_reinit_redraws_the_top_layers_and_the_pooler_only():
    model = tiny_classifier()
    for variable in model.weights:  # move everything off its initial value
        variable.assign(variable + 0.5)
    before = snapshot(model)
    names = reinitialize_top_layers(model, 1)
    assert names == ["layer_2", "pooler"]
    assert changed_groups(model, before) == {"layer_2", "pooler"}
    assert changed_paths(before, model) == {
        v.path for group in ("layer_2", "pooler") for v in parameter_groups(model)[group]
    }
    for variable in parameter_groups(model)["layer_2"]:
        value = keras.ops.convert_to_numpy(variable)
        if variable.name in ("bias", "beta"):
            np.testing.assert_array_equal(value, 0.0)
        elif variable.name == "gamma":
            np.testing.assert_array_equal(value, 1.0)
        else:  # BERT's truncated normal, stddev 0.02 before truncation
            assert 0.01 < value.std() < 0.025 and abs(value).max() <= 0.04 + 1e-6


def test_settings_that_do_not_fit_the_encoder_are_errors():
    with pytest.raises(ValueError, match=r"finetune.train_top_layers: 5 .* 0..3"):
        check_finetune(FinetuneConfig(train_top_layers=5), NUM_LAYERS, epochs=3)
    with pytest.raises(ValueError, match=r"finetune.frozen_epochs: 3 .* fewer than"):
        check_finetune(FinetuneConfig(frozen_epochs=3), NUM_LAYERS, epochs=3)
    with pytest.raises(ValueError, match="lora_rank and freeze_encoder"):
        check_finetune(FinetuneConfig(lora_rank=4, freeze_encoder=True), NUM_LAYERS, epochs=3)
