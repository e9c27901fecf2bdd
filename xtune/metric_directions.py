"""Each metric's better direction: the names `training.metric` may take (no numpy, no sklearn).

`xtune.metrics` computes these metrics and re-exports the tables; the config reads them from
here, so checking a config does not import scikit-learn.
"""

from __future__ import annotations

# Whether a larger value of each metric is better ("max") or worse ("min"). The strings are the
# `mode` values of keras.callbacks.ModelCheckpoint / EarlyStopping, so they can be passed as is.
# The multi-label metrics are the keys of `multilabel_metrics`' result ...
MULTILABEL_METRIC_DIRECTIONS: dict[str, str] = {
    "subset_accuracy": "max",
    "top1_accuracy": "max",
    "micro_f1": "max",
    "macro_f1": "max",
    "samples_f1": "max",
    "micro_precision": "max",
    "micro_recall": "max",
    "macro_precision": "max",
    "macro_recall": "max",
    "hamming_loss": "min",
}
# ... the score-task metrics those of `score_metrics`' result; `training.metric` may name any.
SCORE_METRIC_DIRECTIONS: dict[str, str] = {"pearson": "max", "spearman": "max", "mse": "min"}
# Hierarchical metrics (`hierarchical_metrics`): these, and `level_<k>_*` for levels 1-9.
HIERARCHY_METRIC_DIRECTIONS: dict[str, str] = {
    "hierarchical_precision": "max",
    "hierarchical_recall": "max",
    "hierarchical_f1": "max",
    "consistency": "max",
    **{
        f"level_{level}_{name}": "max"
        for level in range(1, 10)
        for name in ("accuracy", "micro_f1", "macro_f1")
    },
}
# Masked-LM metrics on the held-out split (`xtune.tasks.mlm`): accuracy of the masked pieces,
# their mean cross-entropy, and its exponential, the perplexity.
MLM_METRIC_DIRECTIONS: dict[str, str] = {
    "mlm_accuracy": "max",
    "mlm_loss": "min",
    "perplexity": "min",
}
METRIC_DIRECTIONS: dict[str, str] = {
    **MULTILABEL_METRIC_DIRECTIONS,
    **SCORE_METRIC_DIRECTIONS,
    **HIERARCHY_METRIC_DIRECTIONS,
    **MLM_METRIC_DIRECTIONS,
}
