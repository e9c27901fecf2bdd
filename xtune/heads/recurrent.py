"""A (bi)LSTM or GRU over the token states, masked, then mask-aware pooling of its outputs."""

from __future__ import annotations

from typing import Any

import keras

from xtune.heads.base import HEADS, Head
from xtune.heads.checks import RNN_POOLING_MODES, check_recurrent_head, pooling_modes
from xtune.heads.pooling import concatenate, masked_pool

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}  # checks.RECURRENT_CELLS


@HEADS.register("rnn")
@keras.saving.register_keras_serializable(package="xtune")
class RecurrentHead(Head):
    """An LSTM or GRU (bidirectional by default) over `sequence_output`; pooled; MLP stack.

    The recurrent layer gets the padding mask, so padded steps neither update its state nor
    reach the backward direction; its outputs are then pooled over real tokens only (`mean`,
    `max`, `min`, or a list to concatenate). The vector has `rnn_units` (x2 when
    bidirectional) features per pooling mode.

    ```yaml
    head: {name: rnn, cell: lstm, rnn_units: 128, pooling: max}           # BiLSTM + max
    head: {name: rnn, cell: gru, bidirectional: false, pooling: [mean, max], units: [256]}
    ```

    Args:
        cell: `lstm` (default) or `gru`.
        rnn_units: state size per direction (default 128).
        bidirectional: run a backward copy too and concatenate (default True).
        pooling: `mean`, `max` (default), `min`, or a list of them.
        units, activation, dropout, layer_norm: the MLP stack, see `Head`.
    """

    check_arguments = staticmethod(check_recurrent_head)

    def __init__(
        self,
        cell: str = "lstm",
        rnn_units: int = 128,
        bidirectional: bool = True,
        pooling: str | list[str] = "max",
        **kwargs: Any,
    ):
        RecurrentHead.check_arguments(cell, rnn_units, bidirectional, pooling)
        super().__init__(**kwargs)
        self.cell = cell
        self.rnn_units = rnn_units
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.modes = pooling_modes(pooling, RNN_POOLING_MODES)
        recurrent = CELLS[cell](rnn_units, return_sequences=True, name=cell)
        self.recurrent = (
            keras.layers.Bidirectional(recurrent, name=f"bi{cell}") if bidirectional else recurrent
        )

    def build_features_to_vector(self, features_shape: dict[str, Any]) -> tuple:
        self.recurrent.build(features_shape["sequence_output"])
        directions = 2 if self.bidirectional else 1
        return (None, self.rnn_units * directions * len(self.modes))

    def features_to_vector(self, features: dict[str, Any], training: bool | None) -> Any:
        mask = features["padding_mask"]
        outputs = self.recurrent(
            features["sequence_output"],
            mask=keras.ops.cast(mask, "bool"),
            training=training,
        )
        return concatenate([masked_pool(outputs, mask, mode) for mode in self.modes])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "cell": self.cell,
            "rnn_units": self.rnn_units,
            "bidirectional": self.bidirectional,
            "pooling": self.pooling,
        }
