"""LoRA trains only its matrices and the head, and reloads (merged or as an adapter) exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tests.training.conftest import bce, changed_paths, snapshot, tiny_batch, tiny_classifier
from xtune.config import FinetuneConfig
from xtune.model import count_parameters
from xtune.training.freezing import set_trainable
from xtune.training.layerwise import parameter_groups
from xtune.training.lora import enable_lora, load_adapter, save_adapter
from xtune.training.optimizers import OPTIMIZERS
from xtune.training.schedules import SCHEDULES

FINETUNE = FinetuneConfig(lora_rank=2, lora_alpha=4.0)


def lora_classifier(seed: int = 0, layers=None):
    model = tiny_classifier(seed=seed)
    adapted = enable_lora(
        model, rank=2, alpha=4.0, targets=["query_dense", "value"], layer_indices=layers
    )
    set_trainable(model, FINETUNE)
    return model, adapted


def trained_lora_classifier():
    model, _ = lora_classifier()
    optimizer = OPTIMIZERS.build({"name": "adamw", "learning_rate": 1e-2})(
        model, SCHEDULES.build("constant"), 10
    )
    model.compile(optimizer=optimizer, loss=bce(), run_eagerly=True)
    x, y = tiny_batch()
    before = snapshot(model)
    for _ in range(3):
        model.train_on_batch(x, y)
    return model, before


@pytest.fixture(scope="module")
def trained():
    return trained_lora_classifier()


def test_only_lora_matrices_and_the_head_train(trained):
    model, before = trained
    lora = {v.path for v in model.weights if v.name.startswith("lora_kernel_")}
    head = {v.path for v in parameter_groups(model)["head"]}
    assert len(lora) == 3 * 2 * 2  # layers x (query, value) x (A, B)
    assert {v.path for v in model.trainable_weights} == lora | head
    assert changed_paths(before, model) == lora | head
    sizes = {v.path: int(np.prod(v.shape)) for v in model.weights}
    assert count_parameters(model)["trainable"] == sum(sizes[p] for p in lora | head)


def test_merged_weights_reload_into_a_plain_classifier(trained, tmp_path):
    model, _ = trained
    model.save_weights(tmp_path / "model.weights.h5")  # Keras merges A @ B into the kernels
    plain = tiny_classifier(seed=7)
    plain.load_weights(tmp_path / "model.weights.h5")
    x, _ = tiny_batch(seed=3)
    np.testing.assert_array_equal(plain(x, training=False), model(x, training=False))


def test_adapter_reloads_onto_the_same_base_encoder(trained, tmp_path):
    model, _ = trained
    save_adapter(model, tmp_path / "adapter.npz")
    fresh, _ = lora_classifier()  # same seed: the same base weights, untrained adapters
    x, _ = tiny_batch(seed=3)
    assert not np.array_equal(fresh(x, training=False), model(x, training=False))
    load_adapter(fresh, tmp_path / "adapter.npz")
    np.testing.assert_array_equal(fresh(x, training=False), model(x, training=False))


def test_lora_on_the_top_layers_only():
    model, adapted = lora_classifier(layers=[2])
    assert adapted == [
        "transformer_layer_2/self_attention_layer/query",
        "transformer_layer_2/self_attention_layer/value",
    ]


def test_unknown_target_lists_the_projections():
    model = tiny_classifier()
    with pytest.raises(ValueError, match=r"qkv match no layer; .*attention_output.*query"):
        enable_lora(model, rank=2, targets=["qkv"])
