"""Task objects from a run config's `tasks`: each config's task type, by name, from `TASKS`."""

from __future__ import annotations

from typing import Any

# Importing the task modules registers their types into TASKS.
from xtune.tasks import bi_encoder, classification, mlm, regression  # noqa: F401
from xtune.tasks.base import Task
from xtune.tasks.checks import hierarchy_mode
from xtune.tasks.hierarchical import HierarchicalClassificationTask
from xtune.tasks.registry import TASKS


def build_tasks(tasks: dict) -> list[Task]:
    """Task objects from a run config's `tasks` (name -> TaskConfig), in config order."""
    return [task_class(config)(name, config) for name, config in tasks.items()]


def task_class(config: Any) -> type[Task]:
    """The task type's class; a classification task with a hierarchy gets
    `HierarchicalClassificationTask`."""
    if config.type == "classification" and hierarchy_mode(config) != "none":
        return HierarchicalClassificationTask
    return TASKS.get(config.type)
