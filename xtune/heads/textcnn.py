"""Text-CNN over the token states: convolutions of several widths, masked max-over-time."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from xtune.heads.base import HEADS, Head
from xtune.heads.checks import check_textcnn_head
from xtune.heads.pooling import concatenate, masked_pool


@HEADS.register("textcnn")
@keras.saving.register_keras_serializable(package="xtune")
class TextCNNHead(Head):
    """Kim (2014)-style CNN over `sequence_output`, then dropout and the MLP stack.

    One `Conv1D(filters, size, padding="same")` per filter size reads the last layer's token
    states; each feature map is max-pooled over time and the maps are concatenated
    (`[b, filters * len(filter_sizes)]`). Padding cannot contribute: padded states are zeroed
    before the convolutions (so a window reaching past the text sees the same zeros as the
    convolution's own "same" padding) and only windows centred on real tokens take part in
    the max. "same" padding also handles texts shorter than the widest filter.

    Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014.

    ```yaml
    head: {name: textcnn, filter_sizes: [3, 4, 5], units: [512, 256]}   # mlp(512,256) + textcnn
    head: {name: textcnn, filter_sizes: [2, 3], filters: 64, conv_activation: gelu}
    ```

    Args:
        filter_sizes: convolution widths in tokens (default `[3, 4, 5]`).
        filters: feature maps per width (default 128).
        conv_activation: activation of the convolutions (default `relu`).
        units, activation, dropout, layer_norm: the MLP stack, see `Head`; `dropout` is also
            applied to the pooled CNN features.
    """

    check_arguments = staticmethod(check_textcnn_head)

    def __init__(
        self,
        filter_sizes: list[int] | tuple[int, ...] = (3, 4, 5),
        filters: int = 128,
        conv_activation: str = "relu",
        **kwargs: Any,
    ):
        TextCNNHead.check_arguments(filter_sizes, filters, conv_activation)
        super().__init__(**kwargs)
        filter_sizes = list(filter_sizes)
        self.filter_sizes = filter_sizes
        self.filters = filters
        self.conv_activation = conv_activation
        self.convolutions = [
            keras.layers.Conv1D(
                filters, size, padding="same", activation=conv_activation, name=f"conv_{size}"
            )
            for size in filter_sizes
        ]

    def build_features_to_vector(self, features_shape: dict[str, Any]) -> tuple:
        for conv in self.convolutions:
            conv.build(features_shape["sequence_output"])
        return (None, self.filters * len(self.filter_sizes))

    def features_to_vector(self, features: dict[str, Any], training: bool | None) -> Any:
        states = features["sequence_output"]
        mask = features["padding_mask"]
        states = states * ops.expand_dims(ops.cast(mask, states.dtype), -1)
        pooled = [masked_pool(conv(states), mask, "max") for conv in self.convolutions]
        return concatenate(pooled)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filter_sizes": self.filter_sizes,
            "filters": self.filters,
            "conv_activation": self.conv_activation,
        }
