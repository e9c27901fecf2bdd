"""How a run names its tasks' metrics in history, metrics.json and the epoch lines.

A config without `tasks:` is one classification task named `default` whose metrics keep the
names they always had (`val_micro_f1`, `best.micro_f1`), so committed results, reports and
grids read the same; named tasks' metrics are `<task>.<key>` beside the weighted
`mean_score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class MetricNames:
    tasks: list[Any]
    implicit: bool  # the one task of a config without `tasks:`

    def flat(self, metrics: dict[str, dict[str, float]]) -> dict[str, float]:
        """`{task: {metric: v}}` -> `{"task.metric": v}` (or `{metric: v}` when implicit)."""
        if self.implicit:
            (values,) = metrics.values()
            return dict(values)
        return {
            f"{task}.{key}": value
            for task, values in metrics.items()
            for key, value in values.items()
        }

    def flat_some(self, metrics: dict[str, dict[str, float]]) -> dict[str, float] | None:
        """`flat`, or None when no task has such metrics (e.g. no tuned thresholds)."""
        return self.flat(metrics) if metrics else None

    def per_task(self, values: dict[str, Any]) -> Any:
        """A per-task record (e.g. the majority baseline): the one task's own when implicit."""
        if self.implicit:
            return next(iter(values.values()), {})
        return values

    def best(self, metrics: dict[str, dict[str, float]], score: float) -> dict[str, float]:
        """metrics.json's `best`: the tasks' metrics, and the mean score when named."""
        flat = self.flat(metrics)
        return flat if self.implicit else {"mean_score": score, **flat}

    def epoch_metrics(
        self, logs: dict, metrics: dict[str, dict[str, float]], score: float, plan: Any
    ) -> dict[str, Any]:
        """An epoch's history entries after the epoch, loss and seconds."""
        if self.implicit:
            return {f"val_{key}": value for key, value in self.flat(metrics).items()}
        record: dict[str, Any] = {"val_mean_score": score}
        for index, task in enumerate(self.tasks):
            record[f"steps_{task.name}"] = plan.steps_of(index)
            record[f"train_loss_{task.name}"] = float(logs.get(f"loss_{task.name}", float("nan")))
            record.update({f"val_{task.name}.{k}": v for k, v in metrics[task.name].items()})
        return record

    def epoch_line(
        self, record: dict, metrics: dict[str, dict[str, float]], score: float, improved: bool
    ) -> str:
        best = "  (best)" if improved else ""
        if self.implicit:
            (task,) = self.tasks
            values = metrics[task.name]
            extra = "".join(
                f"  {label} {values[key]:.4f}"
                for key, label in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"))
                if key in values
            )
            return (
                f"epoch {record['epoch']}: loss {record['train_loss']:.4f}  val {task.metric} "
                f"{values[task.metric]:.4f}{extra}{best}"
            )
        summary = "  ".join(
            f"{task.name} "
            + " ".join(f"{k} {metrics[task.name][k]:.4f}" for k in task.line_metrics)
            for task in self.tasks
        )
        loss = record["train_loss"]
        return f"epoch {record['epoch']}: loss {loss:.4f}  {summary}  mean {score:.4f}{best}"
