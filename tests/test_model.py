"""The classifier graph: logits bias starts at the label prior."""

import numpy as np

from tests.conftest import tiny_encoder_spec
from xtune.encoders import load_encoder
from xtune.heads import get_head
from xtune.losses import get_loss
from xtune.model import build_classifier, initialize_logits_bias


def test_prior_bias_starts_the_loss_at_the_label_entropy():
    rng = np.random.default_rng(0)
    labels = (rng.random((64, 6)) < [0.5, 0.2, 0.1, 0.05, 0.05, 0.02]).astype("float32")
    batch = {
        "token_ids": rng.integers(5, 100, (64, 12)).astype("int32"),
        "segment_ids": np.zeros((64, 12), "int32"),
        "padding_mask": np.ones((64, 12), "int32"),
    }
    loss = get_loss("bce")
    model = build_classifier(load_encoder(tiny_encoder_spec()), get_head("default"), 6)
    zero_bias = float(loss(labels, model(batch, training=False)))
    initialize_logits_bias(model, labels, multi_label=True)
    prior_bias = float(loss(labels, model(batch, training=False)))
    p = np.clip(labels.mean(0), 1e-4, 1 - 1e-4)
    entropy = float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))
    assert zero_bias > 0.6  # ~log 2: every label starts at p = 0.5
    assert abs(prior_bias - entropy) < 0.1
    scores = np.asarray(loss.scores(model(batch, training=False)))
    np.testing.assert_allclose(scores.mean(0), labels.mean(0), atol=0.1)
