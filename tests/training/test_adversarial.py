"""FGM/PGD: the step equals a plain step on clean + adversarial gradients computed here by hand,
the embedding matrix comes back bitwise, and the weights reload into a plain classifier."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import (
    bce,
    changed_paths,
    snapshot,
    step_model,
    tiny_batch,
    tiny_classifier,
    train_once,
)
from xtune.config import ConfigError, parse_component
from xtune.model import adapter_of
from xtune.training.adversarial import ADVERSARIAL, FGM, PGD

SGD_RATE = 0.1
WORD_EMBEDDINGS = "token_embedding/embeddings"


def reference_gradients(model, x, y, attack) -> tuple[list[np.ndarray], float, float]:
    """Clean + adversarial gradients by the textbook recipe, eagerly, in NumPy."""
    position, embeddings = next(
        (i, v) for i, v in enumerate(model.trainable_weights) if v.path == WORD_EMBEDDINGS
    )

    def loss_and_gradients():
        with tf.GradientTape() as tape:
            loss = bce()(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_weights)
        return float(loss), [tf.convert_to_tensor(g).numpy() for g in gradients]

    original = embeddings.numpy().copy()
    clean_loss, clean = loss_and_gradients()
    direction, perturbation = clean[position], np.zeros_like(original)
    for _ in range(attack.steps):
        step = direction / np.linalg.norm(direction)
        if isinstance(attack, FGM):
            perturbation = attack.epsilon * step
        else:
            perturbation = perturbation + attack.alpha * step
            norm = np.linalg.norm(perturbation)
            if norm > attack.epsilon:
                perturbation *= attack.epsilon / norm
        embeddings.assign(original + perturbation)
        adversarial_loss, adversarial = loss_and_gradients()
        direction = adversarial[position]
    embeddings.assign(original)
    return [c + a for c, a in zip(clean, adversarial, strict=True)], clean_loss, adversarial_loss


@pytest.mark.parametrize(
    "attack", [FGM(epsilon=0.5), PGD(epsilon=0.5, alpha=0.3, steps=3)], ids=["fgm", "pgd"]
)
def test_step_is_a_plain_step_on_clean_plus_adversarial_gradients(attack):
    x, y = tiny_batch()
    adversarial = step_model(seed=1, attack=attack)
    adversarial.compile(optimizer=keras.optimizers.SGD(SGD_RATE))
    logs = train_once(adversarial, x, y)  # graph mode

    plain = tiny_classifier(seed=1)
    gradients, clean_loss, adversarial_loss = reference_gradients(plain, x, y, attack)
    keras.optimizers.SGD(SGD_RATE).apply(
        [tf.constant(g) for g in gradients], plain.trainable_weights
    )
    expected = snapshot(plain)
    for path, value in snapshot(adversarial).items():
        np.testing.assert_allclose(value, expected[path], rtol=1e-5, atol=1e-6, err_msg=path)
    assert logs["loss"] == pytest.approx(clean_loss, rel=1e-5)
    assert logs["adversarial_loss"] == pytest.approx(adversarial_loss, rel=1e-5)
    assert logs["adversarial_loss"] > logs["loss"]


@pytest.mark.parametrize(
    ("jit_compile", "policy"),
    [(False, "float32"), (True, "float32"), (False, "mixed_bfloat16")],
    ids=["graph", "xla", "graph-bfloat16"],
)
def test_embeddings_come_back_bitwise_in_compiled_steps(jit_compile, policy):
    """With a zero learning rate the optimizer moves nothing, so any change is a leak."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = step_model(attack=FGM(epsilon=1.0))
        optimizer = keras.optimizers.SGD(0.0)
        model.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
        x, y = tiny_batch()
        before = snapshot(model)
        for _ in range(2):
            logs = train_once(model, x, y, jit_compile=jit_compile)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert changed_paths(before, model) == set()
    assert np.isfinite(logs["loss"]) and logs["adversarial_loss"] > logs["loss"]


def test_frozen_embeddings_are_still_perturbed():
    model = step_model(attack=FGM(epsilon=1.0))
    adapter_of(model).word_embeddings.trainable = False
    model.compile(optimizer=keras.optimizers.SGD(SGD_RATE))
    x, y = tiny_batch()
    before = snapshot(model)
    logs = {k: float(v) for k, v in model.train_step((0, ((x, y),))).items()}  # eagerly
    assert logs["adversarial_loss"] > logs["loss"]
    assert WORD_EMBEDDINGS not in changed_paths(before, model)


def test_weights_reload_into_a_plain_classifier(tmp_path):
    x, y = tiny_batch()
    model = step_model(seed=2, attack=PGD())
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.train_step((0, ((x, y),)))  # eagerly
    model.save_weights(tmp_path / "model.weights.h5")
    reloaded = tiny_classifier(seed=5)
    reloaded.load_weights(tmp_path / "model.weights.h5")
    # Both called eagerly: graph and eager runs may round differently, weights do not.
    np.testing.assert_array_equal(reloaded(x, training=False), model(x, training=False))


def test_registry_builds_each_method_and_rejects_unknown_arguments():
    assert ADVERSARIAL.build("none") is None
    assert isinstance(ADVERSARIAL.build({"name": "pgd", "steps": 2}), PGD)
    with pytest.raises(ConfigError, match="valid keys: epsilon"):
        parse_component({"name": "fgm", "alpha": 0.3}, ADVERSARIAL, "adversarial", "x.yaml")
