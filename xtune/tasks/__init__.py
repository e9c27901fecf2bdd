"""Tasks (a task = data columns + output + loss + metrics + decision rule + export signature,
registered by type name in `TASKS`) and multi-task training parts: task samplers.

Importing the package loads no TensorFlow, so its light modules (`checks`, `signatures`,
`samplers`) serve the config on their own. The task types, and `TASKS` filled with them,
load on first use of a name below (PEP 562 `__getattr__`, as `xtune` loads its API).
"""

from typing import Any

from xtune.lazy_exports import bind_exports

__all__ = [
    "SAMPLERS",
    "TASKS",
    "BiEncoderTask",
    "ClassificationTask",
    "HierarchicalClassificationTask",
    "MaskedLMTask",
    "PairClassificationTask",
    "RegressionTask",
    "Task",
    "TaskData",
    "TaskSplit",
    "TaskSampler",
    "build_tasks",
    "get_sampler",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from xtune.tasks import (  # noqa: F401
        base,
        bi_encoder,
        build,
        classification,
        hierarchical,
        mlm,
        registry,
        regression,
        samplers,
    )

    return bind_exports(globals(), __all__, name, locals().values())
