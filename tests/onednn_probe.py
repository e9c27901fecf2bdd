"""`python -m tests.onednn_probe OUT.npz`: a small random classifier's logits and one step's
gradients on fixed inputs, written to OUT.npz after `import xtune` set TensorFlow up;
tests/test_tensorflow_settings.py runs it under each `TF_ENABLE_ONEDNN_OPTS` and compares."""

from __future__ import annotations

import sys

import numpy as np

import xtune  # noqa: F401  (before TensorFlow: its settings)


def probe() -> dict[str, np.ndarray]:
    import keras
    import tensorflow as tf

    from tests.conftest import tiny_encoder_spec
    from xtune.encoders.encoder import load_encoder
    from xtune.heads import get_head
    from xtune.model import build_classifier

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch = {
        "token_ids": rng.integers(5, 100, (16, 24)).astype("int32"),
        "segment_ids": np.zeros((16, 24), "int32"),
        "padding_mask": np.ones((16, 24), "int32"),
    }
    spec = tiny_encoder_spec(hidden_dim=128, intermediate_dim=512, num_heads=4)
    model = build_classifier(load_encoder(spec), get_head("default"), 6)
    with tf.GradientTape() as tape:
        logits = model(batch, training=False)
        loss = tf.reduce_mean(tf.square(logits))
    gradients = tape.gradient(loss, model.trainable_variables)
    arrays = {"logits": logits.numpy()}
    for variable, gradient in zip(model.trainable_variables, gradients, strict=True):
        arrays[variable.path] = tf.convert_to_tensor(gradient).numpy()
    return arrays


if __name__ == "__main__":
    np.savez(sys.argv[1], **probe())
