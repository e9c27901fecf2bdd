"""Tests for xtune.metrics against small examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from xtune.metrics import (
    HIERARCHY_METRIC_DIRECTIONS,
    METRIC_DIRECTIONS,
    MULTILABEL_METRIC_DIRECTIONS,
    SCORE_METRIC_DIRECTIONS,
    is_improvement,
    majority_baseline,
    most_frequent_label_set,
    multilabel_metrics,
    per_label_report,
)

# Four rows, three labels. Row 2 has no true label; label 2 is never predicted.
Y_TRUE = np.array(
    [
        [1, 0, 1],
        [0, 1, 0],
        [0, 0, 0],
        [1, 1, 0],
    ]
)
Y_PRED = np.array(
    [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 0],
        [1, 0, 0],
    ]
)
SCORES = np.array(
    [
        [0.9, 0.1, 0.4],  # top label 0: true
        [0.2, 0.8, 0.1],  # top label 1: true
        [0.3, 0.1, 0.2],  # top label 0, but the row has no true label: wrong
        [0.4, 0.6, 0.1],  # top label 1: true
    ]
)


def test_multilabel_metrics_hand_computed():
    metrics = multilabel_metrics(Y_TRUE, Y_PRED, SCORES)
    # Per label: label 0 tp=2 fp=0 fn=0 -> P=1, R=1, F1=1
    #            label 1 tp=1 fp=0 fn=1 -> P=1, R=1/2, F1=2/3
    #            label 2 tp=0 fp=0 fn=1 -> P=0/0->0, R=0, F1=0
    # Pooled: tp=3 fp=0 fn=2 -> micro P=3/3=1, R=3/5, F1=2*1*0.6/(1+0.6)=0.75
    # Per row F1: row0 true{0,2} pred{0} -> 2/3; row1 -> 1; row2 empty/empty -> 0; row3 -> 2/3
    expected = {
        "subset_accuracy": 2 / 4,  # rows 1 and 2 match exactly
        "top1_accuracy": 3 / 4,  # rows 0, 1, 3
        "micro_f1": 0.75,
        "macro_f1": (1 + 2 / 3 + 0) / 3,  # = 5/9
        "samples_f1": (2 / 3 + 1 + 0 + 2 / 3) / 4,  # = 7/12
        "micro_precision": 1.0,
        "micro_recall": 3 / 5,
        "macro_precision": (1 + 1 + 0) / 3,
        "macro_recall": (1 + 0.5 + 0) / 3,
        "hamming_loss": 2 / 12,  # row0 label 2 and row3 label 1 are wrong
    }
    assert metrics.keys() == expected.keys()
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value), name
        assert isinstance(metrics[name], float), name


def test_perfect_prediction_scores_one():
    y_true = np.array([[1, 0], [0, 1], [1, 1]])
    metrics = multilabel_metrics(y_true, y_true, y_true.astype(float))
    for name, direction in MULTILABEL_METRIC_DIRECTIONS.items():
        assert metrics[name] == pytest.approx(1.0 if direction == "max" else 0.0), name


def test_label_absent_and_never_predicted_counts_as_zero_in_macro():
    # Add a 4th label that is neither true nor predicted anywhere: it enters every macro mean
    # as 0 (GoEmotions / sklearn convention), so macro_f1 drops from 5/9 to (1+2/3+0+0)/4.
    y_true = np.hstack([Y_TRUE, np.zeros((4, 1), dtype=int)])
    y_pred = np.hstack([Y_PRED, np.zeros((4, 1), dtype=int)])
    scores = np.hstack([SCORES, np.zeros((4, 1))])
    metrics = multilabel_metrics(y_true, y_pred, scores)
    assert metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 0 + 0) / 4)  # = 5/12
    assert metrics["macro_precision"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert metrics["macro_recall"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    # Micro counts do not change (no tp/fp/fn added); hamming divides by 16 cells now.
    assert metrics["micro_f1"] == pytest.approx(0.75)
    assert metrics["hamming_loss"] == pytest.approx(2 / 16)


def test_row_without_true_labels_is_wrong_for_top1_and_zero_for_samples_f1():
    y_true = np.array([[0, 0]])
    metrics = multilabel_metrics(y_true, np.array([[0, 0]]), np.array([[0.2, 0.1]]))
    assert metrics["top1_accuracy"] == 0.0
    assert metrics["samples_f1"] == 0.0
    assert metrics["subset_accuracy"] == 1.0  # empty set predicted for an empty set
    assert metrics["hamming_loss"] == 0.0


def test_top1_ties_go_to_lowest_label_index():
    y_true = np.array([[0, 1], [1, 0]])
    scores = np.array([[0.5, 0.5], [0.5, 0.5]])  # argmax -> label 0 in both rows
    metrics = multilabel_metrics(y_true, y_true, scores)
    assert metrics["top1_accuracy"] == pytest.approx(1 / 2)


def test_accepts_lists_and_booleans():
    metrics = multilabel_metrics(
        [[True, False], [False, True]], [[True, True], [False, True]], [[0.9, 0.6], [0.2, 0.7]]
    )
    # tp=2 fp=1 fn=0 -> micro P=2/3, R=1, F1=2*(2/3)/(5/3)=4/5; one wrong cell of four.
    assert metrics["micro_precision"] == pytest.approx(2 / 3)
    assert metrics["micro_f1"] == pytest.approx(4 / 5)
    assert metrics["hamming_loss"] == pytest.approx(1 / 4)
    assert metrics["subset_accuracy"] == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "scores", "message"),
    [
        ([[1, 0]], [[1, 0, 0]], [[0.1, 0.2]], "y_pred has shape"),
        ([[1, 0]], [[1, 0]], [[0.1, 0.2, 0.3]], "scores has shape"),
        ([1, 0], [1, 0], [0.1, 0.2], "y_true must be a non-empty"),
        ([[1, 2]], [[1, 0]], [[0.1, 0.2]], "y_true must contain only 0/1"),
        ([[1, 0]], [[0.7, 0]], [[0.1, 0.2]], "y_pred must contain only 0/1"),
        ([[1, 0]], [[1, 0]], [[np.nan, 0.2]], "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(y_true, y_pred, scores, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(y_true, y_pred, scores)


def test_per_label_report_hand_computed():
    report = per_label_report(Y_TRUE, Y_PRED, ["城乡建设", "交通运输", "环境保护"])
    assert [row["label"] for row in report] == ["城乡建设", "交通运输", "环境保护"]
    # Same per-label counts as in test_multilabel_metrics_hand_computed.
    expected = [
        {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "predicted": 2},
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "predicted": 1},
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0},
    ]
    for row, want in zip(report, expected, strict=True):
        for key, value in want.items():
            assert row[key] == pytest.approx(value), (row["label"], key)
    assert isinstance(report[0]["support"], int)


def test_per_label_report_rejects_wrong_number_of_names():
    with pytest.raises(ValueError, match="label_names has 2 names but y_true has 3"):
        per_label_report(Y_TRUE, Y_PRED, ["a", "b"])


# Training labels: {2} three times, {0} twice, {0,1} twice.
# Most frequent label set: {2} (3 rows). Most frequent single label: 0 (4 rows; label 2 has 3).
Y_TRAIN = np.array([[0, 0, 1]] * 3 + [[1, 0, 0]] * 2 + [[1, 1, 0]] * 2)
Y_EVAL = np.array(
    [
        [0, 0, 1],
        [1, 0, 0],
        [1, 1, 0],
        [0, 0, 0],
    ]
)


def test_most_frequent_label_set():
    np.testing.assert_array_equal(most_frequent_label_set(Y_TRAIN), [0, 0, 1])
    # A tie goes to the pattern seen first.
    np.testing.assert_array_equal(most_frequent_label_set([[0, 1], [1, 0], [1, 0], [0, 1]]), [0, 1])


def test_majority_baseline_hand_computed():
    baseline = majority_baseline(Y_TRAIN, Y_EVAL)
    assert set(baseline) == {"most_frequent_label_set", "most_frequent_label"}

    # Predict {2} everywhere. Scores are the train frequencies [4/7, 2/7, 3/7] -> top label 0,
    # which is true in rows 1 and 2.
    # label 0: tp0 fp0 fn2 -> 0,0,0; label 1: tp0 fp0 fn1 -> 0,0,0;
    # label 2: tp1 fp3 fn0 -> P=1/4, R=1, F1=2*(1/4)/(5/4)=2/5.
    # Pooled: tp=1 fp=3 fn=3 -> P=R=F1=1/4.
    # Rows F1: 1, 0, 0, 0 (row 3 has no true label). Wrong cells: 0+2+3+1=6 of 12.
    label_set = baseline["most_frequent_label_set"]
    assert label_set["subset_accuracy"] == pytest.approx(1 / 4)
    assert label_set["top1_accuracy"] == pytest.approx(2 / 4)
    assert label_set["micro_precision"] == pytest.approx(1 / 4)
    assert label_set["micro_recall"] == pytest.approx(1 / 4)
    assert label_set["micro_f1"] == pytest.approx(1 / 4)
    assert label_set["macro_precision"] == pytest.approx((0 + 0 + 1 / 4) / 3)  # = 1/12
    assert label_set["macro_recall"] == pytest.approx((0 + 0 + 1) / 3)
    assert label_set["macro_f1"] == pytest.approx((0 + 0 + 2 / 5) / 3)  # = 2/15
    assert label_set["samples_f1"] == pytest.approx(1 / 4)
    assert label_set["hamming_loss"] == pytest.approx(6 / 12)

    # Predict {0} everywhere.
    # label 0: tp2 fp2 fn0 -> P=1/2, R=1, F1=2/3; labels 1 and 2: tp0 fp0 fn1 -> 0.
    # Pooled: tp=2 fp=2 fn=2 -> P=R=F1=1/2.
    # Rows F1: 0, 1, 2/3 (true{0,1} pred{0}), 0. Wrong cells: 2+0+1+1=4 of 12.
    single_label = baseline["most_frequent_label"]
    assert single_label["subset_accuracy"] == pytest.approx(1 / 4)
    assert single_label["top1_accuracy"] == pytest.approx(2 / 4)
    assert single_label["micro_f1"] == pytest.approx(1 / 2)
    assert single_label["macro_precision"] == pytest.approx((1 / 2) / 3)  # = 1/6
    assert single_label["macro_recall"] == pytest.approx(1 / 3)
    assert single_label["macro_f1"] == pytest.approx((2 / 3) / 3)  # = 2/9
    assert single_label["samples_f1"] == pytest.approx((0 + 1 + 2 / 3 + 0) / 4)  # = 5/12
    assert single_label["hamming_loss"] == pytest.approx(4 / 12)


def test_majority_baseline_rejects_mismatched_label_columns():
    with pytest.raises(ValueError, match="y_train has 3 label columns but y_eval has 2"):
        majority_baseline(Y_TRAIN, [[0, 1]])


def test_metric_directions_cover_every_metric():
    metrics = multilabel_metrics(Y_TRUE, Y_PRED, SCORES)
    assert set(MULTILABEL_METRIC_DIRECTIONS) == set(metrics)
    assert MULTILABEL_METRIC_DIRECTIONS["hamming_loss"] == "min"
    assert {d for name, d in MULTILABEL_METRIC_DIRECTIONS.items() if name != "hamming_loss"} == {
        "max"
    }
    # `training.metric` may name a metric of either task family (or a hierarchical task's,
    # or a masked-LM task's).
    from xtune.metric_directions import MLM_METRIC_DIRECTIONS
    from xtune.tasks.mlm import masked_lm_metrics

    assert set(MLM_METRIC_DIRECTIONS) == set(masked_lm_metrics(np.ones((2, 3))))
    assert METRIC_DIRECTIONS == {
        **MULTILABEL_METRIC_DIRECTIONS,
        **SCORE_METRIC_DIRECTIONS,
        **HIERARCHY_METRIC_DIRECTIONS,
        **MLM_METRIC_DIRECTIONS,
    }


def test_is_improvement():
    assert is_improvement("micro_f1", 0.5, None)
    assert is_improvement("micro_f1", 0.6, 0.5)
    assert not is_improvement("micro_f1", 0.5, 0.5)  # a tie keeps the earlier checkpoint
    assert is_improvement("hamming_loss", 0.1, 0.2)
    assert not is_improvement("hamming_loss", 0.3, 0.2)
    with pytest.raises(ValueError, match="unknown metric 'f1'; expected one of .*micro_f1"):
        is_improvement("f1", 0.5, 0.4)


def test_fixed_threshold_report_is_the_goemotions_paper_evaluation():
    from xtune.metrics import fixed_threshold_report

    scores = [[0.4, 0.2], [0.1, 0.6], [0.35, 0.31]]
    truth = [[1, 0], [0, 1], [0, 1]]
    report = fixed_threshold_report(truth, scores, ["joy", "anger"], threshold=0.3)
    # Predictions at > 0.3: [[1, 0], [0, 1], [1, 1]].
    # joy:   TP 1, FP 1, FN 0 -> P 1/2, R 1, F1 2/3.   anger: TP 2, FP 0, FN 0 -> P 1, R 1, F1 1.
    assert report["per_label"][0]["precision"] == pytest.approx(0.5)
    assert report["per_label"][0]["f1"] == pytest.approx(2 / 3)
    assert report["per_label"][1]["f1"] == pytest.approx(1.0)
    assert report["macro_precision"] == pytest.approx(0.75)
    assert report["macro_recall"] == pytest.approx(1.0)
    assert report["macro_f1"] == pytest.approx(5 / 6)  # mean of per-label F1, not F1 of means
    # A score exactly at the threshold is not a prediction.
    at = fixed_threshold_report([[1]], [[0.3]], ["x"], threshold=0.3)
    assert at["macro_recall"] == 0.0
