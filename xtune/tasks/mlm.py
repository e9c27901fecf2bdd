"""`mlm`: masked-language-model training on unlabeled text, a task like any other.

Data: documents (`xtune.data.corpus`: rows of one or more files, one or more columns; cleaned
by `data.prepare` when set) tokenized, split into words and packed into `[CLS] ... [SEP]`
sequences of at most `data.max_length` tokens (`xtune.data.whole_word_masking`). Training
batches are masked afresh each time they are drawn (`tasks.NAME.mlm.mask_rate` of the words,
80/10/10); the held-out splits once, from `data.split_seed`, so their metrics compare across
epochs and before and after training. Output: the masked-LM head on the shared encoder
(`xtune.encoders.masked_lm`), logits over the vocabulary at the masked positions. Loss: the
masked pieces' mean cross-entropy. Metrics: `mlm_accuracy` (the share of masked pieces
predicted exactly), `mlm_loss` (their mean cross-entropy) and `perplexity` (its exponential).
It trains alone (`xtune pretrain`) or beside other tasks, as an auxiliary loss on their shared
encoder. It has no export signature.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xtune.tasks.base import Task, TaskData, TaskSplit, encoder_features, encoder_inputs
from xtune.tasks.checks import MaskedLMRules
from xtune.tasks.registry import TASKS

STATISTICS = 3  # per held-out row: summed cross-entropy, correct pieces, masked pieces


def masked_piece_losses(targets: Any, logits: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """(cross-entropy of each masked position `[b, p]`, 1.0 where `targets` holds a masked
    piece's id and 0.0 where it holds the padding -1)."""
    targets = tf.cast(targets, tf.int32)
    weights = tf.cast(targets >= 0, tf.float32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(targets, 0), logits=tf.cast(logits, tf.float32)
    )
    return losses * weights, weights


def masked_token_crossentropy(targets: Any, logits: Any) -> tf.Tensor:
    """The mean cross-entropy over a batch's masked pieces (0 when it has none).

    `targets` `[b, p]`: the original ids at the masked positions, -1 for padding; `logits`
    `[b, p, vocabulary]`. E.g. uniform logits over 4 ids give log 4 = 1.386.
    """
    losses, weights = masked_piece_losses(targets, logits)
    return tf.reduce_sum(losses) / tf.maximum(tf.reduce_sum(weights), 1.0)


def masked_token_statistics(targets: Any, logits: Any) -> tf.Tensor:
    """Per row `[b, 3]`: the masked pieces' summed cross-entropy, how many the logits' top-1
    predicts, how many there are (`masked_lm_metrics` sums them over a split)."""
    losses, weights = masked_piece_losses(targets, logits)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    correct = tf.cast(tf.equal(predicted, tf.cast(targets, tf.int32)), tf.float32) * weights
    sums = [tf.reduce_sum(values, axis=1) for values in (losses, correct, weights)]
    return tf.stack(sums, axis=1)


def masked_lm_metrics(statistics: np.ndarray) -> dict[str, float]:
    """`mlm_accuracy`, `mlm_loss` and `perplexity` = exp(mlm_loss) from per-row statistics."""
    loss_sum, correct, count = np.asarray(statistics, np.float64).reshape(-1, STATISTICS).sum(0)
    count = max(float(count), 1.0)
    loss = float(loss_sum) / count
    return {"mlm_accuracy": float(correct) / count, "mlm_loss": loss, "perplexity": math.exp(loss)}


def sequences_split(sequences: Any) -> Any:
    """Packed sequences as a `TokenizedSplit` whose segment channel carries the word-start
    flags: `make_dataset` batches (and buckets) it like any split, and `MaskedLMTask` reads
    the flags back; the encoder gets segment ids of 0 (one segment)."""
    from xtune.data.pipeline import TokenizedSplit

    labels = np.zeros((len(sequences), 0), np.float32)
    return TokenizedSplit(sequences.token_ids, sequences.word_starts, sequences.row_splits, labels)


@TASKS.register("mlm")
class MaskedLMTask(MaskedLMRules, Task):
    """Masked-LM training with whole-word masking on the text of one or more files and
    columns (`tasks.NAME.mlm`); held-out `mlm_accuracy` and `perplexity`."""

    default_metric = "mlm_accuracy"

    def __init__(self, name: str, config: Any):
        super().__init__(name, config)
        self.masking: Any = None  # MaskingSettings of the built model's tokenizer
        self.encoder_input_names: tuple[str, ...] = ()
        self.held_out: dict[int, tuple[TaskSplit, Any]] = {}  # id(split) -> (split, masks)
        self.statistics_steps: dict[int, tuple[keras.Model, Any]] = {}

    @property
    def line_metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.metric, "perplexity")))

    @property
    def head_name(self) -> str:
        return f"{self.name}__masked_lm"

    def build_loss(self) -> Any:
        return masked_token_crossentropy

    # ------------------------------------------------------------ data

    def load(self, encoder: Any) -> TaskData:
        from xtune.data.corpus import prepare_corpus, read_corpus_splits
        from xtune.data.whole_word_masking import DocumentTokenizer, pack_documents

        data, mlm, tokenizer = self.config.data, self.config.mlm, encoder.tokenizer
        self.check_mask_token(encoder)
        corpus = read_corpus_splits(data, mlm, f"tasks.{self.name}.mlm")
        preparation = None
        if data.prepare.enabled():
            corpus, preparation = prepare_corpus(corpus, data.prepare)
        tokenize = DocumentTokenizer(tokenizer, self.chinese_words(), mlm.whole_words)
        splits, summary = {}, {}
        for name, split in corpus.items():
            documents = tokenize(split.documents)
            sequences = pack_documents(
                documents, data.max_length, tokenizer.cls_id, tokenizer.sep_id, mlm.pack
            )
            splits[name] = TaskSplit(
                [sequences_split(sequences)], np.zeros((len(sequences), 0), np.float32)
            )
            summary[name] = {
                "sources": split.sources,
                "documents": len(split),
                "sequences": len(sequences),
                "tokens": int(len(sequences.token_ids)),
            }
        return TaskData(splits, [], [], preparation=preparation, summary=summary)

    def check_mask_token(self, encoder: Any) -> None:
        from xtune.registry import ConfigError

        if encoder.tokenizer.mask_id is None:
            raise ConfigError(
                f"tasks.{self.name}: the encoder {encoder.source} has no mask token ([MASK] or "
                "<mask>) in its vocabulary; the mlm task needs one"
            )

    def chinese_words(self) -> Any:
        """jieba's segmenter (with the user dictionary) for whole words; None: no whole words."""
        from xtune.data.examples import resolve_path
        from xtune.data.whole_word_masking import ChineseWords

        mlm = self.config.mlm
        if not mlm.whole_words:
            return None
        dictionary = mlm.user_dictionary
        path = resolve_path(self.config.data, dictionary) if dictionary else None
        return ChineseWords(path, f"tasks.{self.name}.mlm.user_dictionary")

    def required_token_ids(self, tokenizer: Any) -> list[int]:
        """A trimmed vocabulary keeps the mask token, which no corpus text holds."""
        return [] if tokenizer.mask_id is None else [tokenizer.mask_id]

    def dataset(
        self,
        split: TaskSplit,
        batch_size: int,
        shuffle: bool,
        seed: int,
        indices: np.ndarray | None = None,
        with_labels: bool = True,
        padding: str | None = None,
        max_buckets: int | None = None,
    ) -> tf.data.Dataset:
        """Batches of `(inputs with mask_positions, original ids)`, masked afresh each time
        (`WholeWordMasker`); the sequences bucketed by length as any task's rows."""
        from xtune.data.pipeline import make_dataset
        from xtune.data.whole_word_masking import WholeWordMasker

        data = self.config.data
        batches = make_dataset(
            split.sides[0],
            batch_size,
            padding or data.padding,
            data.max_length,
            shuffle=shuffle,
            seed=seed,
            indices=indices,
            max_buckets=max_buckets,
        )
        masker = WholeWordMasker(self.masking)

        def mask(inputs: dict[str, tf.Tensor], _labels: tf.Tensor) -> Any:
            padding_mask = inputs["padding_mask"]
            masked = masker(inputs["token_ids"], padding_mask, inputs["segment_ids"])
            token_ids, positions, originals = masked
            features = self.model_inputs(token_ids, padding_mask, positions)
            return (features, originals) if with_labels else features

        return batches.map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def model_inputs(self, token_ids: Any, padding_mask: Any, positions: Any) -> dict[str, Any]:
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        if "segment_ids" in self.encoder_input_names:
            inputs["segment_ids"] = tf.zeros_like(token_ids)
        return {**inputs, "mask_positions": positions}

    # ------------------------------------------------------------ model

    def build_output(self, encoder: Any, encoder_model: keras.Model) -> tuple[dict, Any]:
        from xtune.data.whole_word_masking import MaskingSettings
        from xtune.encoders.masked_lm import masked_lm_head

        self.masking = MaskingSettings.of(encoder.tokenizer, self.config.mlm.mask_rate)
        self.encoder_input_names = tuple(encoder.input_names)
        inputs = encoder_inputs(encoder, task=self.name)
        positions = keras.Input(shape=(None,), dtype="int32", name=f"{self.name}__mask_positions")
        features = encoder_features(encoder_model, inputs)
        head = masked_lm_head(encoder, self.head_name)
        logits = head(features["sequence_output"], mask_positions=positions)
        return {**inputs, "mask_positions": positions}, logits

    def initialize(self, model: keras.Model, data: TaskData) -> None:
        """The head from the checkpoint's masked-LM head when it has one."""
        from xtune.encoders.masked_lm import initialize_from_checkpoint
        from xtune.model import adapter_of

        started = initialize_from_checkpoint(adapter_of(model), model.get_layer(self.head_name))
        print(f"xtune: task {self.name}: {started}", flush=True)

    # ------------------------------------------------------------ held-out metrics

    def held_out_masks(self, split: TaskSplit) -> Any:
        """`split` masked once, from `data.split_seed` (the same masks every epoch)."""
        from xtune.data.whole_word_masking import PackedSequences, mask_split

        key = id(split)
        if key not in self.held_out:
            side = split.sides[0]
            sequences = PackedSequences(side.token_ids, side.segment_ids, side.row_splits)
            masks = mask_split(sequences, self.masking, self.config.data.split_seed)
            self.held_out[key] = (split, masks)
        return self.held_out[key][1]

    def held_out_batches(self, masks: Any, batch_size: int) -> tf.data.Dataset:
        """`(inputs, original ids)` batches of a split masked once, in row order."""
        tokens = tf.RaggedTensor.from_row_splits(masks.token_ids, masks.row_splits)
        positions = tf.RaggedTensor.from_row_splits(masks.positions, masks.mask_splits)
        originals = tf.RaggedTensor.from_row_splits(masks.originals, masks.mask_splits)
        dataset = tf.data.Dataset.from_tensor_slices((tokens, positions, originals))

        def dense(tokens: Any, positions: Any, originals: Any) -> tuple[dict, tf.Tensor]:
            padding_mask = tf.ones_like(tokens).to_tensor()
            inputs = self.model_inputs(tokens.to_tensor(), padding_mask, positions.to_tensor())
            return inputs, originals.to_tensor(default_value=-1)

        return dataset.ragged_batch(batch_size).map(dense).prefetch(tf.data.AUTOTUNE)

    def statistics_step(self, model: keras.Model) -> Any:
        """`model`'s `masked_token_statistics` of a batch, traced once per model."""
        if id(model) not in self.statistics_steps:

            @tf.function(reduce_retracing=True)
            def step(inputs: dict[str, tf.Tensor], targets: tf.Tensor) -> tf.Tensor:
                return masked_token_statistics(targets, model(inputs, training=False))

            self.statistics_steps[id(model)] = (model, step)
        return self.statistics_steps[id(model)][1]

    def predict(self, model: keras.Model, split: TaskSplit, batch_size: int) -> np.ndarray:
        """Per row of a held-out split `[rows, 3]`: `masked_token_statistics` (not logits:
        a split's logits over the vocabulary would not fit in memory)."""
        step = self.statistics_step(model)
        batches = self.held_out_batches(self.held_out_masks(split), batch_size)
        rows = [step(inputs, targets).numpy() for inputs, targets in batches]
        return np.concatenate(rows) if rows else np.zeros((0, STATISTICS), np.float32)

    def evaluate(self, targets: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        return masked_lm_metrics(outputs)

    def serving_outputs(self, outputs: tf.Tensor, thresholds: Any = None) -> dict[str, tf.Tensor]:
        raise NotImplementedError("an mlm task has no export signature")

    def record(self) -> dict[str, Any]:
        record = super().record()
        return {**record, "serves": False, "mlm": dataclasses.asdict(self.config.mlm)}
