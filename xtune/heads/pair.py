"""Bi-encoder (Sentence-BERT) pieces: a sentence vector from token states, the features of a
pair of sentence vectors for a classifier, and their cosine similarity for a score loss."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.heads.checks import PAIR_PARTS, check_cosine_score, check_pair_features, pair_parts
from xtune.heads.pooling import masked_pool


def masked_mean_pool(sequence_output: Any, padding_mask: Any) -> Any:
    """`[b, t, h]` token states -> `[b, h]`: the mean over real tokens (`padding_mask` 1), the
    sentence embedding Sentence-BERT uses. Padding never contributes; see `masked_pool`."""
    return masked_pool(sequence_output, padding_mask, "mean")


@keras.saving.register_keras_serializable(package="xtune")
class PairFeatures(keras.layers.Layer):
    """`[u, v]`, two `[b, h]` sentence vectors -> `[b, len(parts) * h]`, the chosen parts
    concatenated in the order given.

    Parts: `u`, `v`, `abs_diff` (`|u - v|`) and `product` (`u * v`, element-wise). The default,
    all four, is Sentence-BERT's input to its softmax classifier (Reimers & Gurevych 2019,
    https://arxiv.org/abs/1908.10084); their ablation found `|u - v|` the most useful part.

    >>> PairFeatures(parts=["abs_diff", "product"])([u, v])   # u=[[1, 2]], v=[[3, -1]]
    [[2, 3, 3, -2]]
    """

    check_arguments = staticmethod(check_pair_features)

    def __init__(self, parts: Any = PAIR_PARTS, **kwargs: Any):
        self.parts = pair_parts(parts)
        super().__init__(**kwargs)

    def call(self, inputs: Any) -> Any:
        u, v = inputs
        pieces = {
            "u": lambda: u,
            "v": lambda: v,
            "abs_diff": lambda: ops.abs(u - v),
            "product": lambda: u * v,
        }
        chosen = [pieces[part]() for part in self.parts]
        return chosen[0] if len(chosen) == 1 else ops.concatenate(chosen, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        u_shape = tuple(input_shape[0])
        width = None if u_shape[-1] is None else u_shape[-1] * len(self.parts)
        return (*u_shape[:-1], width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "parts": list(self.parts)}


@keras.saving.register_keras_serializable(package="xtune")
class CosineScore(keras.layers.Layer):
    """`[u, v]`, two `[b, h]` sentence vectors -> `[b]` cos(u, v), in float32.

    Each norm is floored at `epsilon` (`sqrt(max(|u|^2, epsilon^2))`), so a zero vector gives
    cos 0 with a finite (zero) gradient instead of NaN. The layer computes in float32 by
    default even under a mixed-precision policy: a cosine of bfloat16 sums keeps ~2 digits,
    too few for the differences CoSENT scales by 20.

    >>> CosineScore()([np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])])
    [0.7071]
    """

    check_arguments = staticmethod(check_cosine_score)

    def __init__(self, epsilon: float = 1e-8, **kwargs: Any):
        CosineScore.check_arguments(epsilon)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs: Any) -> Any:
        u, v = (ops.cast(x, "float32") for x in inputs)
        return ops.sum(self.unit(u) * self.unit(v), axis=-1)

    def unit(self, x: Any) -> Any:
        squared_norm = ops.sum(ops.square(x), axis=-1, keepdims=True)
        return x / ops.sqrt(ops.maximum(squared_norm, self.epsilon**2))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape[0])[:-1]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}
