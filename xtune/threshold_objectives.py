"""What `training.tune_thresholds` and `training.decision_rule` may name, and the objective a
setting tunes for (no numpy, no sklearn: the config reads these; `xtune.thresholds` tunes)."""

from __future__ import annotations

# What `training.tune_thresholds` may name besides `auto` (the selection metric's objective):
# `per_label_f1` gives each label its own threshold (the F1-maximising one); every other
# objective is a metric maximised (`hamming_loss`: minimised) by ONE threshold shared by all
# labels, tuned jointly: per-label thresholds chase noise on the few positives of rare labels.
GLOBAL_OBJECTIVES = ("micro_f1", "subset_accuracy", "samples_f1", "hamming_loss")
OBJECTIVES = ("auto", "per_label_f1", *GLOBAL_OBJECTIVES)
# `training.decision_rule`: what the export and predict serve.
DECISION_RULES = ("auto", "default", "tuned")


def objective_for(setting: str | None, metric: str) -> str | None:
    """The tuning objective of `training.tune_thresholds` for a run selected on `metric`:
    `auto` tunes for the metric itself (`macro_f1`: per-label F1; `micro_f1`, `subset_accuracy`,
    `samples_f1`, `hamming_loss`: one shared threshold); None when there is nothing to tune
    (tuning off, or a metric thresholds cannot improve such as `top1_accuracy`)."""
    if setting != "auto":
        return setting
    if metric == "macro_f1":
        return "per_label_f1"
    return metric if metric in GLOBAL_OBJECTIVES else None
