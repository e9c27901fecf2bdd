"""Predict a tokenized split in length-sorted batches and score it with the loss's decision rule."""

from __future__ import annotations

import keras
import numpy as np

from xtune.data.pipeline import TokenizedSplit, length_sorted_order, make_dataset
from xtune.metrics import evaluate_scores, scores_of  # noqa: F401  (re-exported)


def predict_logits(
    model: keras.Model, split: TokenizedSplit, batch_size: int, max_length: int
) -> np.ndarray:
    """Logits in the split's original row order; rows are batched by length to cut padding."""
    order = length_sorted_order(split)
    dataset = make_dataset(
        split,
        batch_size,
        padding="dynamic",
        max_length=max_length,
        shuffle=False,
        seed=0,
        indices=order,
        with_labels=False,
    )
    logits = np.zeros((len(split), split.labels.shape[1]), dtype=np.float32)
    start = 0
    for inputs in dataset:
        batch_logits = np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
        logits[order[start : start + len(batch_logits)]] = batch_logits
        start += len(batch_logits)
    return logits
