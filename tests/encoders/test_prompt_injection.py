"""Issue 25: prompt and prefix tuning injected through the encoder adapter, for every family
that supports it: an empty prompt and prefix compute the backbone's own outputs, the mask
hides padding but not the prompt or prefix, and the new weights join the right groups."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from xtune.encoders import FAMILIES
from xtune.encoders.prompt_injection import EncoderTuning, embedded_vocabulary_sample
from xtune.model import encoder_features_model

VOCABULARY_SIZE = 300  # byte-level BPE needs 262 ids at least
TUNED_FAMILIES = [
    name
    for name in FAMILIES.names()
    if FAMILIES.get(name).has_tiny_random() and FAMILIES.get(name).supports_tuning
]


def features(family: str, tuning: EncoderTuning | None) -> keras.Model:
    """The tiny family's features model (weights from seed 0), with `tuning` if given."""
    keras.utils.set_random_seed(0)
    adapter = FAMILIES.get(family).tiny_random(VOCABULARY_SIZE)
    if tuning is not None:
        adapter.set_tuning(tuning)
    return encoder_features_model(adapter), adapter


def inputs(adapter, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 250, size=(3, 9)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 5:] = 0  # row 1 is padded
    values = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
    return {name: values[name] for name in adapter.input_names}


def outputs(model: keras.Model, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    result = model(x, training=False)
    flat = {name: np.asarray(value) for name, value in result.items() if name != "hidden_states"}
    for index, state in enumerate(result["hidden_states"]):
        flat[f"hidden_{index}"] = np.asarray(state)
    return flat


def test_the_families_with_tuning():
    assert {"bert", "roberta", "xlm_roberta", "distilbert", "multilingual_e5"} <= set(
        TUNED_FAMILIES
    )


@pytest.mark.parametrize("family", TUNED_FAMILIES)
def test_empty_prompt_and_prefix_compute_the_backbone_outputs(family):
    base, adapter = features(family, None)
    tuned, tuned_adapter = features(family, EncoderTuning(prompt_length=0, prefix_length=0))
    layer_names = [layer.name for layer in tuned_adapter.tuned_features_model().layers]
    assert any(name.startswith("prefixed_") for name in layer_names)  # the method's graph
    x = inputs(adapter)
    want, got = outputs(base, x), outputs(tuned, x)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=1e-6, err_msg=name)


# xlm_roberta and multilingual_e5 build their graphs as roberta and bert do.
@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_prompt_and_prefix_are_attended_and_padding_is_not(family):
    base, adapter = features(family, None)
    tuned, tuned_adapter = features(family, EncoderTuning(prompt_length=3, prefix_length=2))
    x = inputs(adapter)
    got = outputs(tuned, x)
    assert got["sequence_output"].shape == outputs(base, x)["sequence_output"].shape
    # The prompt and the prefix change every real token's output.
    assert not np.allclose(got["sequence_output"], outputs(base, x)["sequence_output"])
    # Tokens under the padding mask change nothing at the real positions.
    other = {name: value.copy() for name, value in x.items()}
    other["token_ids"][1, 5:] = 7
    again = outputs(tuned, other)
    np.testing.assert_allclose(again["sequence_output"][1, :5], got["sequence_output"][1, :5])
    # The new weights reach the outputs (the mask lets the model see them).
    new = [v for v in tuned.weights if v.name in ("soft_prompt", "prefix_keys", "prefix_values")]
    groups = {variable.path: tuned_adapter.parameter_group(variable.path) for variable in new}
    for variable in (new[0], new[1], new[-1]):  # prompt, bottom keys, top values
        saved = np.asarray(variable)
        variable.assign(saved + 1.0)
        moved = outputs(tuned, x)["sequence_output"]
        variable.assign(saved)
        assert not np.allclose(moved, got["sequence_output"]), variable.path
    num_layers = tuned_adapter.num_layers
    assert sorted(groups.values()) == sorted(
        ["embeddings"] + [f"layer_{i}" for i in range(num_layers) for _ in range(2)]
    )


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_a_prefix_starts_as_the_keys_and_values_of_real_tokens(family):
    """Li & Liang's initialisation: the bottom block's prefix is the frozen block's own keys
    and values of a vocabulary sample, so that block computes, at the real positions, what
    it computes on the sample followed by the text."""
    _, adapter = features(family, EncoderTuning(prefix_length=4))
    model = adapter.tuned_features_model()
    embeddings = model.get_layer("embeddings")
    bottom = next(layer for layer in model.layers if layer.name.startswith("prefixed_"))
    x = inputs(adapter)
    embedded = embeddings(x, training=False)
    sample = embedded_vocabulary_sample(embeddings, VOCABULARY_SIZE, 4)
    rows = embedded.shape[0]
    both = keras.ops.concatenate([keras.ops.repeat(sample, rows, axis=0), embedded], axis=1)
    mask = np.concatenate([np.ones((rows, 4), "int32"), x["padding_mask"]], axis=1)
    want = bottom.block(both, padding_mask=mask, training=False)[:, 4:]
    got = bottom(embedded, padding_mask=x["padding_mask"], training=False)
    real = x["padding_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], atol=1e-5)


def test_a_family_without_tuning_names_itself():
    keras.utils.set_random_seed(0)
    adapter = FAMILIES.get("albert").tiny_random(VOCABULARY_SIZE)
    with pytest.raises(ValueError, match=r"not supported for the 'albert' encoder family"):
        adapter.set_tuning(EncoderTuning(prefix_length=4))
