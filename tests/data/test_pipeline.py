"""The tf.data pipeline: every row once per epoch, exact batch counts and masks, bounded bucket
shapes, padding-independent predictions, and the token cache's keys."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from tests.conftest import TINY_VOCAB, tiny_encoder_spec
from xtune.data.examples import Examples
from xtune.data.pipeline import (
    MAX_BUCKETS,
    TRACED_BUCKETS,
    TokenizedSplit,
    batches_per_epoch,
    bucket_boundaries,
    bucket_edges,
    bucket_limit,
    cache_key,
    make_dataset,
    tokenize_examples,
)
from xtune.data.tokenization import TextEncoder
from xtune.encoders import load_encoder
from xtune.encoders.adapter import Packing
from xtune.encoders.bert import BertAdapter, WordPieceTokenizer
from xtune.heads import get_head
from xtune.model import build_classifier
from xtune.training.evaluation import predict_logits

PADDINGS = ("fixed", "dynamic", "bucket")
NUM_LABELS = 3
# Short and long extremes, and lengths on both sides of multiples of 16.
EDGE_LENGTHS = [1, 2, 15, 16, 17, 31, 32, 33, 39, 40]


def ragged_split(
    lengths: list[int] | np.ndarray, seed: int = 0, vocab_size: int = 500
) -> TokenizedSplit:
    """Rows whose labels hold their own index in column 0, tokens drawn at random."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    labels = rng.integers(0, 2, size=(len(lengths), NUM_LABELS)).astype(np.float32)
    labels[:, 0] = np.arange(len(lengths))
    return TokenizedSplit(
        token_ids=rng.integers(1, vocab_size, size=total).astype(np.int32),
        segment_ids=rng.integers(0, 2, size=total).astype(np.int8),
        row_splits=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        labels=labels,
    )


def mixed_lengths(rows: int, max_length: int, seed: int) -> np.ndarray:
    """Mostly short rows (like comments), some long ones, and every edge case."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.08, size=rows) + 1, max_length)
    lengths[: len(EDGE_LENGTHS)] = [min(length, max_length) for length in EDGE_LENGTHS]
    return lengths


def epoch_batches(split: TokenizedSplit, batch_size: int, padding: str, max_length: int, seed: int):
    dataset = make_dataset(split, batch_size, padding, max_length, shuffle=True, seed=seed)
    return [(inputs, labels.numpy()) for inputs, labels in dataset]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("batch_size, seed", [(1, 0), (7, 1), (32, 2), (500, 3)])
def test_every_row_exactly_once_per_epoch(padding, batch_size, seed):
    max_length = 40
    split = ragged_split(mixed_lengths(203, max_length, seed), seed)
    batches = epoch_batches(split, batch_size, padding, max_length, seed)

    seen = np.concatenate([labels[:, 0] for _, labels in batches]).astype(np.int64)
    assert sorted(seen.tolist()) == list(range(len(split)))
    assert len(batches) == batches_per_epoch(split, batch_size, padding, max_length)
    assert all(len(labels) <= batch_size for _, labels in batches)


@pytest.mark.parametrize("padding", PADDINGS)
def test_rows_tokens_labels_and_mask_are_exact(padding):
    max_length = 40
    split = ragged_split(mixed_lengths(120, max_length, 5), 5)
    for inputs, labels in epoch_batches(split, 16, padding, max_length, seed=5):
        token_ids = inputs["token_ids"].numpy()
        segment_ids = inputs["segment_ids"].numpy()
        mask = inputs["padding_mask"].numpy()
        for k, row in enumerate(labels[:, 0].astype(np.int64)):
            start, end = split.row_splits[row], split.row_splits[row + 1]
            length = end - start
            np.testing.assert_array_equal(token_ids[k, :length], split.token_ids[start:end])
            np.testing.assert_array_equal(segment_ids[k, :length], split.segment_ids[start:end])
            np.testing.assert_array_equal(labels[k], split.labels[row])
            assert mask[k, :length].all() and not mask[k, length:].any()
            assert not token_ids[k, length:].any() and not segment_ids[k, length:].any()


@pytest.mark.parametrize("max_length", [40, 64, 128])
def test_padded_lengths_by_mode(max_length):
    split = ragged_split(mixed_lengths(600, max_length, 7), 7)
    edges = set(bucket_edges(split.lengths, 8))
    assert 1 < len(edges) <= MAX_BUCKETS
    for padding in PADDINGS:
        for inputs, _ in epoch_batches(split, 8, padding, max_length, seed=7):
            mask = inputs["padding_mask"].numpy()
            width, longest = mask.shape[1], int(mask.sum(axis=1).max())
            if padding == "fixed":
                assert width == max_length
            elif padding == "dynamic":
                assert width == longest
            else:
                assert width in edges
                # the smallest edge that holds the batch's longest row
                assert width == min(edge for edge in edges if edge >= longest)


def test_uniform_bucket_boundaries():
    assert bucket_boundaries(64) == [17, 33, 49, 65]
    assert bucket_boundaries(40) == [17, 33, 41]
    assert bucket_boundaries(8) == [9]


def padded_positions(lengths: np.ndarray, edges: list[int]) -> int:
    edges = np.asarray(edges)
    return int((edges[np.searchsorted(edges, lengths)] - lengths).sum())


@pytest.mark.parametrize("seed", range(4))
def test_bucket_edges_pad_least_of_all_edge_sets(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 13, size=int(rng.integers(32, 80)))  # enough rows for 4 buckets
    longest = int(lengths.max())
    least = min(
        padded_positions(lengths, [*inner, longest])
        for count in range(4)
        for inner in itertools.combinations(range(1, longest), count)
    )
    edges = bucket_edges(lengths, batch_size=1, max_buckets=4)
    assert padded_positions(lengths, edges) == least
    assert len(edges) <= 4 and edges == sorted(set(edges)) and edges[-1] == longest


def test_bucket_edges_count_and_fit():
    lengths = mixed_lengths(5000, 64, 0)
    edges = bucket_edges(lengths, 32)
    assert len(edges) == MAX_BUCKETS
    uniform = [boundary - 1 for boundary in bucket_boundaries(64)]
    assert padded_positions(lengths, edges) < padded_positions(lengths, uniform) / 2
    # a small split gets fewer buckets, at least one; identical rows need one edge
    assert len(bucket_edges(lengths[:300], 32)) == 1
    assert len(bucket_edges(lengths[:600], 32)) == 2
    assert bucket_edges(np.full(1000, 7), 1) == [7]
    assert bucket_edges(np.array([], np.int64), 32) == [1]


def test_more_buckets_where_shapes_are_free():
    """Without an XLA-compiled step `make_dataset` may use `TRACED_BUCKETS` lengths: every
    row still comes once, the batch count is exact, and fewer positions are padding."""
    assert bucket_limit(xla_step=True) == MAX_BUCKETS < bucket_limit(xla_step=False)
    split = ragged_split(mixed_lengths(8000, 64, 5), 5)
    pads, widths = {}, {}
    for limit in (MAX_BUCKETS, TRACED_BUCKETS):
        dataset = make_dataset(split, 32, "bucket", 64, shuffle=True, seed=5, max_buckets=limit)
        masks = [inputs["padding_mask"].numpy() for inputs, _ in dataset]
        assert len(masks) == batches_per_epoch(split, 32, "bucket", 64, max_buckets=limit)
        assert sum(len(mask) for mask in masks) == len(split)
        pads[limit] = 1 - sum(int(m.sum()) for m in masks) / sum(m.size for m in masks)
        widths[limit] = {mask.shape[1] for mask in masks}
    assert len(widths[MAX_BUCKETS]) == MAX_BUCKETS
    assert MAX_BUCKETS < len(widths[TRACED_BUCKETS]) <= TRACED_BUCKETS
    assert pads[TRACED_BUCKETS] < pads[MAX_BUCKETS] / 2


def test_batches_per_epoch_counts_partial_buckets():
    # batch 2: 36 rows allow 2 buckets, edges 5 and 20 -> 17 + 2 batches
    split = ragged_split([5] * 33 + [20] * 3)
    assert bucket_edges(split.lengths, 2) == [5, 20]
    assert batches_per_epoch(split, 2, "bucket", 64) == 19
    assert batches_per_epoch(split, 2, "dynamic", 64) == 18
    assert len(epoch_batches(split, 2, "bucket", 64, seed=0)) == 19


def test_indices_select_and_order_rows():
    split = ragged_split([3, 4, 5, 6, 7])
    dataset = make_dataset(split, 2, "dynamic", 16, shuffle=False, seed=0, indices=[4, 0, 2])
    rows = np.concatenate([labels.numpy()[:, 0] for _, labels in dataset]).astype(int)
    assert rows.tolist() == [4, 0, 2]


def test_shuffle_depends_on_seed_and_is_reproducible():
    split = ragged_split(mixed_lengths(100, 40, 0))

    def order(seed: int) -> list[int]:
        batches = epoch_batches(split, 10, "bucket", 40, seed)
        return np.concatenate([labels[:, 0] for _, labels in batches]).astype(int).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)


@pytest.fixture(scope="module")
def tiny_classifier():
    keras.utils.set_random_seed(0)
    encoder = load_encoder(tiny_encoder_spec())
    head = get_head({"name": "default", "pooling": "mean"})
    return build_classifier(encoder, head, NUM_LABELS)


def logits_by_row(model, split: TokenizedSplit, padding: str, max_length: int) -> np.ndarray:
    logits = np.zeros((len(split), NUM_LABELS), np.float32)
    for inputs, labels in make_dataset(split, 16, padding, max_length, shuffle=True, seed=3):
        logits[labels.numpy()[:, 0].astype(int)] = model.predict_on_batch(inputs)
    return logits


def test_predictions_do_not_depend_on_padding(tiny_classifier):
    max_length = 48
    vocab_size = sum(1 for _ in TINY_VOCAB.open(encoding="utf-8"))
    split = ragged_split(mixed_lengths(90, max_length, 11), 11, vocab_size)
    fixed = logits_by_row(tiny_classifier, split, "fixed", max_length)
    for padding in ("dynamic", "bucket"):
        np.testing.assert_allclose(
            logits_by_row(tiny_classifier, split, padding, max_length), fixed, atol=1e-5
        )
    # evaluation's own path: length-sorted rows, dynamic padding, original order restored
    np.testing.assert_allclose(
        predict_logits(tiny_classifier, split, 16, max_length), fixed, atol=1e-5
    )
    assert np.abs(fixed).max() > 1e-3  # the model does produce non-trivial logits


# ---------------------------------------------------------------- token cache


def vocabulary() -> list[str]:
    return TINY_VOCAB.read_text(encoding="utf-8").splitlines()


def examples(texts: list[str], pairs: list[str] | None = None) -> Examples:
    return Examples("test", texts, pairs, [[] for _ in texts], list(range(1, len(texts) + 1)))


TEXTS = ["今天天气很好", "我们 去 公园", "", "好" * 70]


def text_encoder(words, lowercase, max_length, *args, packing=BertAdapter.packing):
    return TextEncoder(WordPieceTokenizer(words, lowercase), packing, max_length, *args)


class OtherFamilyTokenizer(WordPieceTokenizer):
    """The same ids as WordPiece, but another family's tokenizer: its cache must differ."""


def test_cache_hit_returns_the_same_arrays(tmp_path, monkeypatch):
    encoder = text_encoder(vocabulary(), True, 32)
    labels = np.eye(len(TEXTS), NUM_LABELS, dtype=np.float32)
    first = tokenize_examples(examples(TEXTS), encoder, labels, str(tmp_path))
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("a cache hit must not tokenize")

    monkeypatch.setattr(TextEncoder, "__call__", no_tokenizing)
    second = tokenize_examples(examples(TEXTS), encoder, labels, str(tmp_path))
    for name in ("token_ids", "segment_ids", "row_splits", "labels"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
        assert getattr(second, name).dtype == getattr(first, name).dtype
    assert first.lengths.max() == 32


def test_splits_without_segment_ids_cache_and_batch_without_them(tmp_path):
    encoder = text_encoder(vocabulary(), True, 32, packing=Packing("roberta", segment_ids=False))
    labels = np.eye(len(TEXTS), NUM_LABELS, dtype=np.float32)
    pairs = examples(TEXTS, ["甲", "乙", "丙", "丁"])
    first = tokenize_examples(pairs, encoder, labels, str(tmp_path))
    second = tokenize_examples(pairs, encoder, labels, str(tmp_path))
    assert first.segment_ids is None and second.segment_ids is None
    np.testing.assert_array_equal(first.token_ids, second.token_ids)
    for padding in PADDINGS:
        inputs, _ = next(iter(make_dataset(first, 4, padding, 32, shuffle=False, seed=0)))
        assert set(inputs) == {"token_ids", "padding_mask"}


def test_cache_key_changes_with_every_setting_and_input():
    words = vocabulary()
    base = text_encoder(words, True, 32)
    key = cache_key(examples(TEXTS), base)
    assert cache_key(examples(TEXTS), text_encoder(words, True, 32)) == key
    other_family = TextEncoder(OtherFamilyTokenizer(words, True), BertAdapter.packing, 32)
    roberta = Packing("roberta", segment_ids=False)
    changed = {
        "max_length": cache_key(examples(TEXTS), text_encoder(words, True, 64)),
        "truncation": cache_key(examples(TEXTS), text_encoder(words, True, 32, "tail")),
        "head_tokens": cache_key(examples(TEXTS), text_encoder(words, True, 32, "head_tail", 8)),
        "lowercase": cache_key(examples(TEXTS), text_encoder(words, False, 32)),
        "vocabulary": cache_key(examples(TEXTS), text_encoder(words + ["新词"], True, 32)),
        "tokenizer family": cache_key(examples(TEXTS), other_family),
        "packing": cache_key(examples(TEXTS), text_encoder(words, True, 32, packing=roberta)),
        "texts": cache_key(examples(TEXTS[:-1] + ["好"]), base),
        "pairs": cache_key(examples(TEXTS, ["甲", "乙", "丙", "丁"]), base),
        "row split": cache_key(examples(["今天", "天气"]), base),
    }
    assert cache_key(examples(["今天天气"]), base) != changed["row split"]
    for setting, other in changed.items():
        assert other != key, setting
