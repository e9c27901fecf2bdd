"""Pair and score tasks: the bi-encoder's features equal a manual computation through the real
encoder; a cross-encoder pair classifier and a cross-encoder regression learn tiny synthetic
data better than a constant prediction."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import tiny_encoder_spec
from tests.tasks.task_data import GOOD, WORDS, multitask_config
from xtune.config import TaskConfig, parse_run_config
from xtune.encoders import load_encoder
from xtune.model import build_task_graph as build_multitask_model
from xtune.tasks import BiEncoderTask
from xtune.training.trainer import train


def side_inputs(text_encoder, texts, prefix):
    encoded = text_encoder.pad(text_encoder(tf.constant(texts)))
    return {f"{prefix}{key}": value for key, value in encoded.items()}


def numpy_mean_pool(states, mask):
    weights = mask[..., None].astype(np.float64)
    return (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)


@pytest.mark.parametrize("output", ["classifier", "cosine"])
def test_bi_encoder_features_equal_a_manual_computation(output):
    encoder = load_encoder(
        parse_run_config({"data": {"train": "x"}, "encoder": tiny_encoder_spec()}).encoder
    )
    config = TaskConfig(type="bi_encoder", output=output, parts=["u", "v", "abs_diff", "product"])
    task = BiEncoderTask("pairs", config)
    task.labels = ["no", "yes"]
    net = build_multitask_model(encoder, [task])
    text_encoder = task.text_encoder(encoder)
    first = ["love super the new world", "not"]  # different lengths: padding must not count
    second = ["hello", "force mail line top org years"]
    inputs = {**side_inputs(text_encoder, first, "a_"), **side_inputs(text_encoder, second, "b_")}
    vectors = []
    for prefix in ("a_", "b_"):
        plain = {k.removeprefix(prefix): v for k, v in inputs.items() if k.startswith(prefix)}
        states = np.asarray(net.encoder_model(plain)["sequence_output"], np.float64)
        vectors.append(numpy_mean_pool(states, np.asarray(plain["padding_mask"])))
    u, v = vectors
    model = net.task_models["pairs"]
    if output == "cosine":
        expected = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
        np.testing.assert_allclose(model.predict_on_batch(inputs), expected, atol=1e-5)
        return
    features_model = keras.Model(model.input, model.get_layer("pairs__pair_features").output)
    features = np.asarray(features_model(inputs))
    expected = np.concatenate([u, v, np.abs(u - v), u * v], axis=1)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    kernel, bias = (np.asarray(w) for w in model.get_layer("pairs__logits").weights)
    np.testing.assert_allclose(model.predict_on_batch(inputs), expected @ kernel + bias, atol=1e-4)


def agreement_rows(rng, count):
    """`both` when both texts are mostly GOOD words, else `not`: needs both segments."""
    rows = []
    for _ in range(count):
        polarity = rng.integers(2, size=2)
        texts = [" ".join(rng.choice(GOOD if good else WORDS[6:], 3)) for good in polarity]
        label = "both" if polarity.all() else "not"
        rows.append({"text": texts[0], "text_pair": texts[1], "labels": label})
    return rows


def intensity_rows(rng, count):
    """A 0-5 score over a pair: 5 x the share of GOOD words in both texts together."""
    rows = []
    for _ in range(count):
        good = rng.integers(0, 7)
        words = list(rng.choice(GOOD, good)) + list(rng.choice(WORDS[6:], 6 - good))
        rng.shuffle(words)
        score = 5 * good / 6
        rows.append({"text": " ".join(words[:3]), "text_pair": " ".join(words[3:]),
                     "labels": f"{score:.3f}"})  # fmt: skip
    return rows


def write(tmp_path, name, rows_of, train=192, dev=64):
    rng = np.random.default_rng(7)
    data = {"text_pair": "text_pair"}
    for split, count in (("train", train), ("dev", dev)):
        path = tmp_path / f"{name}-{split}.csv"
        pd.DataFrame(rows_of(rng, count)).to_csv(path, index=False)
        data[split] = str(path)
    return data


def test_cross_encoder_pair_classification_beats_the_majority(tmp_path):
    data = write(tmp_path, "agree", agreement_rows)
    raw = multitask_config(tmp_path, {"agree": {"type": "pair_classification", "data": data}})
    raw["data"]["padding"] = "fixed"
    raw["training"]["epochs"] = 4
    result = train(parse_run_config(raw), run_dir=tmp_path / "run")
    dev = pd.read_csv(data["dev"])
    majority = dev["labels"].value_counts(normalize=True).max()
    assert result.best["agree.subset_accuracy"] > majority + 0.1
    # Two classes: the positive class's F1 (the second label: neither is named 1/true/yes),
    # and the majority class's constant prediction as the baseline.
    baseline = result.baseline["agree"]["most_frequent_label_set"]
    assert baseline["subset_accuracy"] == pytest.approx(majority)
    assert 0 <= baseline["positive_f1"] <= 1 and 0 < result.best["agree.positive_f1"] <= 1


def test_cross_encoder_regression_beats_a_constant_score(tmp_path):
    data = write(tmp_path, "sts", intensity_rows)
    task = {"type": "regression", "data": data, "low": 0, "high": 5, "metric": "mse"}
    raw = multitask_config(tmp_path, {"sts": task})
    raw["data"]["padding"] = "fixed"
    raw["training"]["epochs"] = 4
    result = train(parse_run_config(raw), run_dir=tmp_path / "run")
    train_scores = pd.read_csv(data["train"])["labels"].to_numpy(float)
    dev_scores = pd.read_csv(data["dev"])["labels"].to_numpy(float)
    constant_mse = np.mean((dev_scores - train_scores.mean()) ** 2)
    assert result.best["sts.mse"] < 0.8 * constant_mse
    baseline = result.baseline["sts"]["train_mean"]  # the constant predictor, in metrics.json
    assert baseline["mse"] == pytest.approx(constant_mse, rel=1e-4)
    assert baseline["pearson"] == 0.0 and baseline["value"] == pytest.approx(train_scores.mean())
    assert result.best["sts.pearson"] > 0.5


def test_scores_outside_the_task_range_are_one_error_naming_the_row(tmp_path):
    """A score above `high` is refused when the task's data is read (the bounded output
    could never reach it), naming the file, the row and the range."""
    from xtune.data.readers import DataError
    from xtune.tasks.regression import check_score_range

    class Split:
        source, rows = "sts-train.csv", [2, 3, 4]

    scores = np.asarray([1.0, 5.5, 7.0], np.float32)
    with pytest.raises(DataError, match=r"sts-train.csv: row 3: score 5.5 is outside the task's "
                       r"range \[0, 5\] \(2 rows outside\); set tasks.sts.low / high"):  # fmt: skip
        check_score_range({"train": (Split(), scores)}, "sts", 0.0, 5.0)
    check_score_range({"train": (Split(), scores)}, "sts", 0.0, 7.0)  # inside: no error


def test_out_of_range_clip_sets_scores_to_the_nearest_bound_and_says_so(tmp_path, capsys):
    """`tasks.NAME.out_of_range: clip` (score tasks only) clips in place and prints the count;
    left at `error` it is not written into the config dict, so run ids stay what they were."""
    from xtune.config import ConfigError, parse_run_config
    from xtune.tasks.regression import check_score_range

    class Split:
        source, rows = "sts-train.csv", [2, 3, 4]

    scores = np.asarray([-1.0, 5.5, 2.0], np.float32)
    check_score_range({"train": (Split(), scores)}, "sts", 0.0, 5.0, clip=True)
    np.testing.assert_array_equal(scores, [0.0, 5.0, 2.0])
    out = capsys.readouterr().out
    assert "task sts: 2 score(s) outside [0, 5] set to the nearest bound" in out
    assert "sts-train.csv: row 2: score -1" in out

    data = {"train": "t.csv", "text_pair": "text_pair"}
    score = {"type": "regression", "data": data, "out_of_range": "clip"}
    raw = multitask_config(tmp_path, {"sts": score})
    assert parse_run_config(raw).to_dict()["tasks"]["sts"]["out_of_range"] == "clip"
    raw = multitask_config(tmp_path, {"sts": {**score, "out_of_range": "error"}})
    assert "out_of_range" not in parse_run_config(raw).to_dict()["tasks"]["sts"]
    labels = {"type": "classification", "data": data, "out_of_range": "clip"}
    with pytest.raises(ConfigError, match="out_of_range: only score tasks read labels as num"):
        parse_run_config(multitask_config(tmp_path, {"topic": labels}))
    with pytest.raises(ConfigError, match="out_of_range: 'cap' is not one of: error, clip"):
        parse_run_config(multitask_config(tmp_path, {"sts": {**score, "out_of_range": "cap"}}))
