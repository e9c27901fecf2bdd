"""Tasks and multi-task training parts: task samplers (which task's batch comes next)."""

from xtune.tasks.samplers import SAMPLERS, TaskSampler, get_sampler

__all__ = ["SAMPLERS", "TaskSampler", "get_sampler"]
