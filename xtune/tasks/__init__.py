"""Tasks (a task = data columns + output + loss + metrics + decision rule + export signature,
registered by type name in `TASKS`) and multi-task training parts: task samplers."""

from typing import Any

# These modules register their task types into TASKS on import.
from xtune.tasks.base import Task, TaskData, TaskSplit  # noqa: E402
from xtune.tasks.bi_encoder import BiEncoderTask  # noqa: E402
from xtune.tasks.classification import ClassificationTask, PairClassificationTask  # noqa: E402
from xtune.tasks.hierarchical import HierarchicalClassificationTask, hierarchy_mode
from xtune.tasks.registry import TASKS
from xtune.tasks.regression import RegressionTask  # noqa: E402
from xtune.tasks.samplers import SAMPLERS, TaskSampler, get_sampler


def build_tasks(tasks: dict) -> list[Task]:
    """Task objects from a run config's `tasks` (name -> TaskConfig), in config order."""
    return [task_class(config)(name, config) for name, config in tasks.items()]


def task_class(config: Any) -> type[Task]:
    """The task type's class; a classification task with a hierarchy gets
    `HierarchicalClassificationTask`."""
    if config.type == "classification" and hierarchy_mode(config) != "none":
        return HierarchicalClassificationTask
    return TASKS.get(config.type)


__all__ = [
    "SAMPLERS",
    "TASKS",
    "BiEncoderTask",
    "ClassificationTask",
    "HierarchicalClassificationTask",
    "PairClassificationTask",
    "RegressionTask",
    "Task",
    "TaskData",
    "TaskSplit",
    "TaskSampler",
    "build_tasks",
    "get_sampler",
]
