"""The grid report's per-level columns for runs with hierarchical labels."""

from __future__ import annotations

from types import SimpleNamespace

from xtune.grid.report import hierarchy_metric_keys


def cell(*bests: dict) -> SimpleNamespace:
    return SimpleNamespace(ok_runs=[{"best": best} for best in bests])


def test_per_level_columns_appear_only_for_hierarchical_runs():
    flat = cell({"subset_accuracy": 0.5, "micro_f1": 0.5})
    assert hierarchy_metric_keys([flat]) == []
    levels = {
        f"level_{k}_{name}": 0.5 for k in (1, 2) for name in ("accuracy", "micro_f1", "macro_f1")
    }
    hierarchical = cell({**levels, "hierarchical_f1": 0.6, "consistency": 1.0})
    assert hierarchy_metric_keys([flat, hierarchical]) == [
        "level_1_accuracy", "level_1_macro_f1", "level_2_accuracy", "level_2_macro_f1",
        "hierarchical_f1", "consistency",
    ]  # fmt: skip
