"""`fault_point`: a test hook that kills this process at a named point (fault-injection tests).

`XTUNE_FAULT_INJECT=PHASE:K` sends SIGKILL to the process the K-th time it reaches PHASE
(`run_start`, `results_append`, `weights_write`); unset, every call is a no-op.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENVIRONMENT_VARIABLE = "XTUNE_FAULT_INJECT"
PHASES = ("run_start", "results_append", "weights_write")

reached: Counter[str] = Counter()


def fault_point(phase: str) -> None:
    """Kill this process here if `XTUNE_FAULT_INJECT` asks for this phase's K-th occurrence."""
    setting = os.environ.get(ENVIRONMENT_VARIABLE)
    if not setting:
        return
    name, _, occurrence = setting.partition(":")
    if name != phase:
        return
    reached[phase] += 1
    if reached[phase] == int(occurrence or 1):
        os.kill(os.getpid(), signal.SIGKILL)  # like a crash or a lost machine: no clean-up
