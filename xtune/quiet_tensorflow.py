"""Keep TensorFlow's start-up log lines (oneDNN notice, CUDA probing) off the terminal.

TensorFlow's shared libraries log through absl's C++ logging before anything can configure it,
straight to file descriptor 2, whatever `TF_CPP_MIN_LOG_LEVEL` says ("All log messages before
absl::InitializeLog() is called are written to STDERR", the oneDNN notice, "Could not find
cuda drivers", "failed call to cuInit"). `tensorflow_start_up_filtered()` lets the first import
of `tensorflow` (wherever it happens: xtune imports it lazily, in the commands that need it)
run with descriptor 2 captured, and writes back what it captured except those lines. The CUDA
probe runs in the same window: `tf.config.list_physical_devices("GPU")` (which lists devices
without creating TensorFlow's runtime, so later device settings still apply).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

# An absl C++ log line: "I0000 00:00:1796426758.352728    4697 port.cc:153] ...".
ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]]+\] ")
PRE_INIT_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
# Error-level lines that are start-up noise on a machine without a (usable) GPU.
NOISE_ERRORS = ("cuInit", "Unable to register cu", "computation placer already registered")


def is_start_up_noise(line: str) -> bool:
    """An info or warning line of absl's C++ logging, or a known harmless error line."""
    if line.startswith(PRE_INIT_NOTICE):
        return True
    match = ABSL_LINE.match(line)
    if match is None:
        return False
    return match.group(1) in "IW" or any(noise in line for noise in NOISE_ERRORS)


@contextlib.contextmanager
def tensorflow_start_up_filtered() -> Iterator[None]:
    """While inside, the first import of `tensorflow` hides its start-up log lines."""
    if "tensorflow" in sys.modules:
        yield
        return
    finder = QuietTensorFlowFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # already removed when it fired
            sys.meta_path.remove(finder)


class QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the path finder does, with a loader that filters its start-up."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # one import; later imports find the module loaded
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = QuietLoader(spec.loader)
        return spec


class QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader with descriptor 2 filtered; gives the module its own loader."""

    def __init__(self, loader: Any):
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self.loader  # what TensorFlow (and importlib.resources) expect
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with native_stderr_filtered():
            self.loader.exec_module(module)
            module.config.list_physical_devices("GPU")


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Capture file descriptor 2 (C++ and Python writes alike) and write back, on exit, the
    lines that are not start-up noise. Without a usable descriptor 2, nothing is filtered."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(True) if not is_start_up_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
