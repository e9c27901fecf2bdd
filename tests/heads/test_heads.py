"""Every registered head: build, forward with padding, save/load, one fit step, mask-awareness."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tests.heads.conftest import (
    NUM_LABELS,
    NUM_LAYERS,
    ROW_LENGTHS,
    multi_hot_labels,
    padded_batch,
    synthetic_features,
    tiny_encoder,
)
from xtune.config import ConfigError, accepted_arguments, parse_component, yaml_load
from xtune.heads import (
    HEADS,
    Head,
    MultiLayerPoolingHead,
    PoolingHead,
    TextCNNHead,
    get_head,
    masked_pool,
)
from xtune.losses import get_loss
from xtune.model import build_classifier, encoder_features_model

# Heads that do not read `pooled_output` leave the pooler without gradients; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Gradients do not exist for variables")

# Small settings for heads whose defaults are sized for real encoders; a head registered
# later runs with its defaults. Every head also gets an MLP stack to exercise it.
SMALL_ARGUMENTS = {
    "multi_layer": {"last_layers": NUM_LAYERS},
    "textcnn": {"filters": 4},
    "rnn": {"rnn_units": 4},
    "attention": {"attention_units": 8},
}
# Further variants for the cheap, features-level checks.
VARIANTS = [
    ("pooling", {"pooling": ["cls", "pooler", "mean", "max", "min"]}),
    ("multi_layer", {"last_layers": 2, "pooling": "mean", "combine": "mean"}),
    ("multi_layer", {"last_layers": 2, "pooling": "max", "combine": "weighted"}),
    ("multi_layer", {"last_layers": 1, "pooling": "min", "combine": "concat"}),
    ("textcnn", {"filter_sizes": [1, 2, 7], "filters": 3, "conv_activation": "gelu"}),
    ("rnn", {"cell": "gru", "rnn_units": 3, "bidirectional": False, "pooling": ["mean", "min"]}),
    ("attention", {"attention_units": None}),
    ("pooling", {"pooling": "mean", "units": [8, 4], "layer_norm": True, "activation": "relu"}),
]


def head_spec(name: str, **overrides) -> dict:
    return {"name": name, "units": [8], **SMALL_ARGUMENTS.get(name, {}), **overrides}


def all_specs() -> list[dict]:
    specs = [head_spec(name) for name in HEADS.names()]
    specs += [head_spec(name, **arguments) for name, arguments in VARIANTS]
    return specs


def spec_id(spec: dict) -> str:
    return "-".join(f"{v}" for k, v in spec.items() if k != "units").replace(" ", "")


def classifier(encoder, spec: dict) -> keras.Model:
    return build_classifier(encoder, get_head(spec), NUM_LABELS)


def head_layer(model: keras.Model) -> Head:
    return next(layer for layer in model.layers if isinstance(layer, Head))


def head_vector_model(model: keras.Model) -> keras.Model:
    return keras.Model(model.inputs, head_layer(model).output)


# ---------------------------------------------------------------- every registered head


@pytest.mark.parametrize("name", HEADS.names())
def test_head_builds_and_runs_on_a_padded_batch(encoder, name):
    model = classifier(encoder, head_spec(name))
    logits = np.asarray(model(padded_batch(), training=False))
    assert logits.shape == (len(ROW_LENGTHS), NUM_LABELS)
    assert np.all(np.isfinite(logits))
    vector = np.asarray(head_vector_model(model)(padded_batch()))
    assert vector.shape == (len(ROW_LENGTHS), 8)  # the MLP stack's last width


@pytest.mark.parametrize("name", HEADS.names())
def test_get_config_echoes_every_constructor_argument(name):
    head = get_head(head_spec(name))
    config = head.get_config()
    missing = accepted_arguments(HEADS.get(name)) - set(config)
    assert not missing, f"{name}: get_config() lacks {sorted(missing)}"
    assert type(head).from_config(config).get_config() == config


@pytest.mark.parametrize("name", HEADS.names())
def test_head_keras_saving_round_trip_gives_the_same_output(name):
    features = synthetic_features()
    head = get_head(head_spec(name))
    expected = np.asarray(head(features, training=False))

    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(head)))
    assert serialized["registered_name"].startswith("xtune>")
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(head)
    # Built from the stored shapes: it takes the weights before its first call.
    assert [w.shape for w in restored.weights] == [w.shape for w in head.weights]
    restored.set_weights(head.get_weights())
    np.testing.assert_allclose(np.asarray(restored(features, training=False)), expected, atol=1e-6)


@pytest.mark.parametrize("name", HEADS.names())
def test_classifier_save_and_load_weights_gives_identical_logits(encoder, name, tmp_path):
    model = classifier(encoder, head_spec(name))
    batch = padded_batch()
    expected = np.asarray(model(batch, training=False))
    path = tmp_path / "classifier.weights.h5"
    model.save_weights(path)

    keras.utils.set_random_seed(1)  # a different initialisation, overwritten by the load
    fresh = classifier(tiny_encoder(), head_spec(name))
    assert not np.allclose(np.asarray(fresh(batch, training=False)), expected)
    fresh.load_weights(path)
    np.testing.assert_array_equal(np.asarray(fresh(batch, training=False)), expected)


@pytest.mark.parametrize("name", HEADS.names())
def test_one_fit_step_with_a_real_loss_updates_the_head(encoder, name):
    model = classifier(encoder, head_spec(name))
    head = head_layer(model)
    batch = padded_batch()
    before = [np.array(w) for w in head.trainable_weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=get_loss("bce"), run_eagerly=True)
    history = model.fit(batch, multi_hot_labels(len(ROW_LENGTHS)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in head.trainable_weights]
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))


# ---------------------------------------------------------------- mask-awareness


@pytest.mark.parametrize("spec", all_specs(), ids=spec_id)
def test_padding_states_cannot_change_the_head_output(spec):
    """Padded positions hold values up to 1e4 and differ between the calls."""
    head = get_head({**spec, "units": []})
    expected = np.asarray(head(synthetic_features(), training=False))
    for seed, extra_padding in [(1, 0), (2, 5), (3, 13)]:
        features = synthetic_features(extra_padding=extra_padding, seed=seed)
        np.testing.assert_allclose(
            np.asarray(head(features, training=False)), expected, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("name", HEADS.names())
def test_extra_padding_tokens_cannot_change_the_classifier(encoder, name):
    """End to end: appended pads with arbitrary token ids under mask 0 change nothing."""
    model = classifier(encoder, head_spec(name))
    vectors = head_vector_model(model)
    expected_logits = np.asarray(model(padded_batch(), training=False))
    expected_vector = np.asarray(vectors(padded_batch(), training=False))
    for seed, extra_padding in [(1, 0), (2, 6)]:
        batch = padded_batch(extra_padding=extra_padding, seed=seed)
        np.testing.assert_allclose(
            np.asarray(vectors(batch, training=False)), expected_vector, atol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(model(batch, training=False)), expected_logits, atol=1e-5
        )


def test_every_transformer_layer_state_ignores_padding(encoder):
    features_model = encoder_features_model(encoder)
    short = features_model(padded_batch())
    long = features_model(padded_batch(extra_padding=6, seed=5))
    mask = padded_batch()["padding_mask"].astype(bool)
    width = mask.shape[1]
    pairs = zip(short["hidden_states"], long["hidden_states"], strict=True)
    for short_states, long_states in pairs:
        np.testing.assert_allclose(
            np.asarray(long_states)[:, :width][mask], np.asarray(short_states)[mask], atol=1e-5
        )
    np.testing.assert_allclose(
        np.asarray(long["hidden_states"][-1]), np.asarray(long["sequence_output"]), atol=0
    )


@pytest.mark.parametrize("mode", ["cls", "mean", "max", "min"])
def test_masked_pool_matches_numpy_over_real_tokens(mode):
    features = synthetic_features()
    states = np.asarray(features["sequence_output"])
    pooled = np.asarray(masked_pool(features["sequence_output"], features["padding_mask"], mode))
    for row, length in enumerate(ROW_LENGTHS):
        real = states[row, :length]
        expected = {"cls": real[0], "mean": real.mean(0), "max": real.max(0), "min": real.min(0)}
        np.testing.assert_allclose(pooled[row], expected[mode], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "max", "min"])
def test_masked_pool_of_a_row_without_tokens_is_zero(mode):
    states = keras.ops.convert_to_tensor(np.full((1, 3, 2), -7.0, "float32"))
    pooled = masked_pool(states, keras.ops.zeros((1, 3), "int32"), mode)
    np.testing.assert_array_equal(np.asarray(pooled), np.zeros((1, 2)))


# ---------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("spec", all_specs(), ids=spec_id)
def test_heads_run_in_bfloat16_and_still_ignore_padding(spec, mixed_bfloat16):
    head = get_head(spec)
    outputs = [
        head(synthetic_features(extra_padding=pad, seed=seed, dtype="bfloat16"), training=False)
        for seed, pad in [(0, 0), (1, 7)]
    ]
    assert keras.backend.standardize_dtype(outputs[0].dtype) == "bfloat16"
    first, second = (np.asarray(keras.ops.cast(o, "float32")) for o in outputs)
    assert np.all(np.isfinite(first))
    np.testing.assert_allclose(second, first, atol=0.05 * max(1.0, np.abs(first).max()))


# ---------------------------------------------------------------- multi-layer pooling


def test_weighted_layer_pooling_weights_are_trainable_and_start_equal(encoder):
    model = classifier(encoder, head_spec("multi_layer", last_layers=2, combine="weighted"))
    head = head_layer(model)
    assert head.uses_hidden_states
    assert head.layer_logits.trainable
    assert any(w is head.layer_logits for w in model.trainable_weights)
    np.testing.assert_allclose(np.asarray(head.layer_weights()), [0.5, 0.5], atol=1e-7)

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=get_loss("bce"), run_eagerly=True)
    model.fit(padded_batch(), multi_hot_labels(len(ROW_LENGTHS)), epochs=1, verbose=0)
    weights = np.asarray(head.layer_weights())
    assert not np.allclose(weights, [0.5, 0.5])
    np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-6)


@pytest.mark.parametrize("combine", ["concat", "mean", "weighted"])
def test_multi_layer_combines_the_last_k_layers(combine):
    features = synthetic_features(num_layers=3)
    head = MultiLayerPoolingHead(last_layers=2, pooling="cls", combine=combine, dropout=0.0)
    output = np.asarray(head(features, training=False))
    top = [np.asarray(states)[:, 0] for states in features["hidden_states"][-2:]]
    expected = np.concatenate(top, -1) if combine == "concat" else (top[0] + top[1]) / 2
    np.testing.assert_allclose(output, expected, rtol=1e-6, atol=1e-6)


def test_multi_layer_asking_for_more_layers_than_the_encoder_has_is_a_clear_error():
    head = MultiLayerPoolingHead(last_layers=5)
    with pytest.raises(ValueError, match="last_layers=5 but the encoder has only 2"):
        head(synthetic_features())


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"last_layers": 0}, "last_layers"),
        ({"pooling": "pooler"}, "pooling"),
        ({"combine": "sum"}, "concat, mean, weighted"),
    ],
)
def test_multi_layer_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        MultiLayerPoolingHead(**arguments)


# ---------------------------------------------------------------- text-CNN


def test_textcnn_handles_rows_shorter_than_the_widest_filter():
    head = TextCNNHead(filter_sizes=[3, 4, 5], filters=2, dropout=0.0)
    features = synthetic_features(lengths=(1, 2))
    output = np.asarray(head(features, training=False))
    assert output.shape == (2, 6)
    assert np.all(np.isfinite(output))


def test_textcnn_max_over_time_equals_a_numpy_convolution_of_the_real_tokens():
    head = TextCNNHead(filter_sizes=[3], filters=2, conv_activation="linear", dropout=0.0)
    features = synthetic_features(lengths=(6, 2))
    output = np.asarray(head(features, training=False))
    kernel, bias = (np.asarray(w) for w in head.convolutions[0].weights)  # [3, h, f], [f]
    states = np.asarray(features["sequence_output"])
    for row, length in enumerate((6, 2)):
        padded = np.pad(states[row, :length], ((1, 1), (0, 0)))  # "same" for width 3
        maps = [np.einsum("kh,khf->f", padded[t : t + 3], kernel) + bias for t in range(length)]
        np.testing.assert_allclose(output[row], np.max(maps, axis=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filter_sizes", [[], [0, 3], [3, 3]])
def test_textcnn_rejects_bad_filter_sizes(filter_sizes):
    with pytest.raises(ValueError, match="filter_sizes"):
        TextCNNHead(filter_sizes=filter_sizes)


# ---------------------------------------------------------------- the study's YAML rows


@pytest.mark.parametrize(
    "text, cls, attributes, width",
    [
        ("{name: default, pooling: pooler, units: [256]}", PoolingHead, {"modes": ["pooler"]}, 256),
        (
            "{name: pooling, pooling: mean, units: [512, 256]}",
            PoolingHead,
            {"modes": ["mean"], "units": [512, 256]},
            256,
        ),
        (
            "{name: textcnn, filter_sizes: [3, 4, 5], units: [512, 256]}",
            TextCNNHead,
            {"filter_sizes": [3, 4, 5], "units": [512, 256]},
            256,
        ),
        (
            "{name: multi_layer, last_layers: 2, combine: weighted, units: [64]}",
            MultiLayerPoolingHead,
            {"last_layers": 2, "combine": "weighted"},
            64,
        ),
    ],
)
def test_study_rows_are_a_few_lines_of_yaml(text, cls, attributes, width):
    spec = parse_component(yaml_load(text), HEADS, "head", "study.yaml")
    head = get_head(spec)
    assert type(head) is cls
    for key, value in attributes.items():
        assert getattr(head, key) == value
    assert head(synthetic_features(), training=False).shape == (len(ROW_LENGTHS), width)


def test_a_misspelt_head_argument_names_the_valid_ones():
    with pytest.raises(ConfigError, match="filter_sizes"):
        parse_component(yaml_load("{name: textcnn, filter_size: [3]}"), HEADS, "head", "x.yaml")


def test_unknown_pooling_lists_the_valid_modes():
    with pytest.raises(ValueError, match="cls, pooler, mean, max, min"):
        PoolingHead(pooling=["mean", "avg"])
