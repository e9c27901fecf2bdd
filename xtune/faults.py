"""`fault_point`: a test hook that kills this process at a named point (fault-injection tests).

`XTUNE_FAULT_INJECT=PHASE:K` sends SIGKILL to the process the K-th time it reaches PHASE
(`run_start`, `results_append`, `weights_write`, `train_step`); unset, every call is a
no-op. With `XTUNE_FAULT_ONCE=FILE` too, only the first process to create FILE is killed, so
a process started again (a grid's Ray task retried in a new worker) runs through.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENVIRONMENT_VARIABLE = "XTUNE_FAULT_INJECT"
ONCE_VARIABLE = "XTUNE_FAULT_ONCE"
PHASES = ("run_start", "results_append", "weights_write", "train_step")

reached: Counter[str] = Counter()


def enabled(phase: str) -> bool:
    """Whether `XTUNE_FAULT_INJECT` names `phase` (so per-step hooks exist only in such tests)."""
    return os.environ.get(ENVIRONMENT_VARIABLE, "").partition(":")[0] == phase


def fault_point(phase: str) -> None:
    """Kill this process here if `XTUNE_FAULT_INJECT` asks for this phase's K-th occurrence."""
    setting = os.environ.get(ENVIRONMENT_VARIABLE)
    if not setting:
        return
    name, _, occurrence = setting.partition(":")
    if name != phase:
        return
    reached[phase] += 1
    if reached[phase] == int(occurrence or 1) and first_to_claim(os.environ.get(ONCE_VARIABLE)):
        os.kill(os.getpid(), signal.SIGKILL)  # like a crash or a lost machine: no clean-up


def first_to_claim(marker: str | None) -> bool:
    """True without a marker file; with one, whether this process created it (atomically)."""
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
