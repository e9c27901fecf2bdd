"""`TASKS`: the task types by name (a leaf module: the task modules register into it)."""

from xtune.registry import Registry

TASKS = Registry("task type")
