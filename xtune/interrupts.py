"""The signals that stop a command: Ctrl-C (SIGINT) raises `KeyboardInterrupt`, SIGTERM
raises `Terminated`, in the main thread, so `finally` blocks remove temporary files and
`xtune` reports the interrupt in one line.

A signal can land while Python runs a finalizer (a TensorFlow object's `__del__`); an
exception raised there is printed as "Exception ignored" and dropped, and training would go
on. The handler therefore also records the signal, and `raise_pending` raises it again at
the next safe point: the end of a training step or epoch, or between two grid runs (the
dropped exception's "Exception ignored" report is not printed: it is not lost).
"""

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_pending: list[int] = []


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt."""


def interruption(signum: int) -> BaseException:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def on_signal(signum: int, frame: object) -> None:
    _pending[:] = [signum]
    raise interruption(signum)


def raise_pending() -> None:
    """Raise the recorded signal's exception if one arrived and was swallowed."""
    if _pending:
        raise interruption(_pending[0])


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise (and are recorded) inside the block; the previous handlers
    come back after it, even when a library replaced the SIGINT handler meanwhile."""
    _pending.clear()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, on_signal) for signum in signals}
    previous_hook = sys.unraisablehook

    def quiet_about_recorded_signals(unraisable) -> None:
        if not (_pending and isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated))):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_about_recorded_signals
    try:
        yield
    finally:
        _pending.clear()
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
