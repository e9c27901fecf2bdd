"""Task samplers: which task's batch comes next in each step of a multi-task epoch.

A sampler turns the tasks' sizes into one task index per step. One epoch has as many steps
as one pass over every task's data, `sum(batches)`, whatever the sampler; deterministic
samplers (`sequential`, `round_robin`) run each task's data exactly once per epoch, random
samplers draw each step's task independently, so a task can be drawn more often than it has
batches and the trainer must repeat (cycle) each task's dataset.

```yaml
sampler: {name: annealed}
sampler: {name: temperature, temperature: 2}
sampler: {name: sequential, order: [1, 0]}
```

The size-based samplers follow p_i ∝ N_i^α (N_i = examples of task i): α = 1 is
proportional, α = 0 uniform, in between a "temperature" (α = 1/T) that gives small tasks
more steps than their size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xtune.registry import Registry, check_number

SAMPLERS = Registry("task sampler")


def check_counts(name: str, counts: Sequence[int]) -> np.ndarray:
    """A non-empty list of positive integers (examples or batches per task), as an array."""
    array = np.asarray(counts)
    if array.ndim != 1 or len(array) == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected a non-empty list of integers per task, got {counts!r}")
    if (array < 1).any():
        raise ValueError(f"{name}: every task needs at least 1, got {list(counts)!r}")
    return array.astype(np.int64)


def check_epoch(epoch: int, epochs: int) -> None:
    check_number("epochs", epochs, 1, integer=True)
    check_number("epoch", epoch, 0, epochs - 1, integer=True)


def power_probabilities(sizes: Sequence[int], alpha: float) -> np.ndarray:
    """p_i = N_i^α / Σ_j N_j^α, computed in log space (exact for α = 0: uniform)."""
    logits = alpha * np.log(check_counts("sizes", sizes).astype(np.float64))
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


class TaskSampler:
    """Base class: the task order of one epoch of multi-task training.

    Subclasses give `probabilities`; random samplers (`draws_at_random = True`) get
    `schedule` from it, deterministic ones override `schedule`.
    """

    name = ""
    draws_at_random = True

    @classmethod
    def check_arguments(cls) -> None:
        """Raise `ValueError` for arguments invalid by meaning (the config calls it early)."""

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        """Each task's probability in epoch `epoch` (0-based) of `epochs`, from the tasks'
        sizes (examples); for deterministic samplers, the share of steps each task gets."""
        raise NotImplementedError

    def schedule(
        self,
        batches: Sequence[int],
        epoch: int,
        epochs: int,
        rng: np.random.Generator,
        sizes: Sequence[int] | None = None,
    ) -> np.ndarray:
        """One task index per step of the epoch: `sum(batches)` steps.

        `batches[i]` is the number of batches in one pass over task i's data. Random samplers
        draw each step from `probabilities(sizes, ...)`; `sizes` (examples per task) default
        to `batches`, which is the same up to rounding when all tasks share one batch size.
        """
        counts = check_counts("batches", batches)
        check_epoch(epoch, epochs)
        probabilities = self.probabilities(counts if sizes is None else sizes, epoch, epochs)
        if len(probabilities) != len(counts):
            raise ValueError(f"sizes: {len(probabilities)} tasks, but batches has {len(counts)}")
        return rng.choice(len(counts), size=int(counts.sum()), p=probabilities)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}


@SAMPLERS.register("sequential")
class SequentialSampler(TaskSampler):
    """All of one task's batches, then all of the next task's: A…A B…B C…C.

    `order` lists task indices (0-based, in the order the tasks are configured) and must name
    every task once; the default is the configured order. Later tasks can overwrite what
    earlier ones taught the shared encoder (the users' sequential fine-tuning collapsed).
    """

    name = "sequential"
    draws_at_random = False

    @classmethod
    def check_arguments(cls, order: list[int] | None = None) -> None:
        if order is None:
            return
        if not isinstance(order, list | tuple) or not order:
            raise ValueError(f"order: expected a non-empty list of task indices, got {order!r}")
        for index in order:
            check_number("order", index, 0, integer=True)
        if len(set(order)) != len(order):
            raise ValueError(f"order: {list(order)!r} repeats a task")

    def __init__(self, order: list[int] | None = None):
        self.check_arguments(order)
        self.order = None if order is None else [int(index) for index in order]

    def task_order(self, num_tasks: int) -> list[int]:
        if self.order is None:
            return list(range(num_tasks))
        if sorted(self.order) != list(range(num_tasks)):
            raise ValueError(
                f"order: {self.order!r} must list each of the {num_tasks} tasks "
                f"(indices 0..{num_tasks - 1}) exactly once"
            )
        return self.order

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        counts = check_counts("sizes", sizes)
        return counts / counts.sum()

    def schedule(
        self,
        batches: Sequence[int],
        epoch: int,
        epochs: int,
        rng: np.random.Generator,
        sizes: Sequence[int] | None = None,
    ) -> np.ndarray:
        counts = check_counts("batches", batches)
        check_epoch(epoch, epochs)
        order = self.task_order(len(counts))
        return np.concatenate([np.full(counts[task], task, dtype=np.int64) for task in order])

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "order": self.order}


@SAMPLERS.register("round_robin")
class RoundRobinSampler(TaskSampler):
    """One batch of each task in turn, A B C A B C …; a task that has run out is skipped,
    so the end of the epoch holds only the largest tasks."""

    name = "round_robin"
    draws_at_random = False

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        counts = check_counts("sizes", sizes)
        return counts / counts.sum()

    def schedule(
        self,
        batches: Sequence[int],
        epoch: int,
        epochs: int,
        rng: np.random.Generator,
        sizes: Sequence[int] | None = None,
    ) -> np.ndarray:
        counts = check_counts("batches", batches)
        check_epoch(epoch, epochs)
        rounds = np.arange(counts.max())[:, None]  # [round, task]: does task have a batch left?
        has_batch = rounds < counts[None, :]
        return np.nonzero(has_batch)[1].astype(np.int64)


@SAMPLERS.register("uniform")
class UniformSampler(TaskSampler):
    """p_i = 1/K for K tasks: every task gets the same number of steps on average."""

    name = "uniform"

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        return power_probabilities(sizes, 0.0)


@SAMPLERS.register("proportional")
class ProportionalSampler(TaskSampler):
    """p_i = N_i / Σ_j N_j: in expectation each task's data once per epoch."""

    name = "proportional"

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        return power_probabilities(sizes, 1.0)


@SAMPLERS.register("temperature")
class TemperatureSampler(TaskSampler):
    """p_i ∝ N_i^(1/T): T = 1 is proportional, T → ∞ uniform.

    Temperature-based sampling as in multilingual/multi-task pre-training (Arivazhagan et al.
    2019, "Massively Multilingual Neural Machine Translation in the Wild"; T5, Raffel et al.
    2020). Default T = 2, e.g. sizes (8544, 6040) -> (0.543, 0.457) instead of (0.586, 0.414).
    """

    name = "temperature"

    @classmethod
    def check_arguments(cls, temperature: float = 2.0) -> None:
        check_number("temperature", temperature, 0, open_low=True)

    def __init__(self, temperature: float = 2.0):
        self.check_arguments(temperature)
        self.temperature = float(temperature)

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        return power_probabilities(sizes, 1.0 / self.temperature)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature}


def annealed_alpha(epoch: int, epochs: int) -> float:
    """α = 1 − 0.8·(e − 1)/(E − 1) for the 1-based epoch e = epoch + 1 of E; α = 1 when E = 1."""
    check_epoch(epoch, epochs)
    if epochs == 1:
        return 1.0
    return 1.0 - 0.8 * epoch / (epochs - 1)


@SAMPLERS.register("annealed")
class AnnealedSampler(TaskSampler):
    """Annealed sampling: p_i ∝ N_i^α, α = 1 − 0.8·(e − 1)/(E − 1) for epoch e = 1..E.

    From proportional (α = 1, first epoch) toward uniform (α = 0.2, last epoch), so small
    tasks get more steps late in training, when the large ones would otherwise interfere.
    Stickland & Murray 2019, "BERT and PALs: Projected Attention Layers for Efficient
    Adaptation in Multi-Task Learning", section 4. With one epoch, α = 1 (proportional).
    """

    name = "annealed"

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        return power_probabilities(sizes, annealed_alpha(epoch, epochs))


def uniform_to_proportional_alpha(epoch: int, epochs: int, epochs_to_proportional: float) -> float:
    """α = min(1, e/T) for the 1-based epoch e = epoch + 1 and T = `epochs_to_proportional`."""
    check_epoch(epoch, epochs)
    return min(1.0, (epoch + 1) / epochs_to_proportional)


@SAMPLERS.register("uniform_to_proportional")
class UniformToProportionalSampler(TaskSampler):
    """p_i ∝ N_i^α with α = min(1, e/T) for epoch e = 1, 2, …: annealing the other way.

    Starts near uniform (α = 1/T; α = 0 would be exactly uniform) so every task's head gets
    trained early, and reaches proportional sampling (α = 1) at epoch T =
    `epochs_to_proportional` (≥ 1), staying there. The project's users' variant of the
    Stickland & Murray (2019) schedule, run in the opposite direction.
    """

    name = "uniform_to_proportional"

    @classmethod
    def check_arguments(cls, epochs_to_proportional: float = 3) -> None:
        check_number("epochs_to_proportional", epochs_to_proportional, 1)

    def __init__(self, epochs_to_proportional: float = 3):
        self.check_arguments(epochs_to_proportional)
        self.epochs_to_proportional = epochs_to_proportional

    def probabilities(self, sizes: Sequence[int], epoch: int, epochs: int) -> np.ndarray:
        alpha = uniform_to_proportional_alpha(epoch, epochs, self.epochs_to_proportional)
        return power_probabilities(sizes, alpha)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "epochs_to_proportional": self.epochs_to_proportional}


def get_sampler(spec: Any) -> TaskSampler:
    """A sampler from a short name, a `{"name": ..., **arguments}` dict or a config object."""
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    return SAMPLERS.build(spec)
