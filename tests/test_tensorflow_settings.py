"""The process-wide TensorFlow settings `import xtune` makes before TensorFlow loads."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.conftest import REPO

ONEDNN_NOTICE = "oneDNN custom operations are on"
PROBE = "import os, xtune, tensorflow; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"


def fresh_process(**env: str) -> tuple[str, str]:
    """(stdout, stderr) of a fresh interpreter importing xtune, then TensorFlow, with TF's
    start-up log on."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="0", **env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip(), done.stderr


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN default is for x86"
)
def test_onednn_kernels_are_on_unless_the_user_turned_them_off():
    """TensorFlow turns oneDNN on by itself only on AVX-512 class x86 CPUs; xtune asks for it on
    every x86 CPU (1.3x on an AVX2-only CPU's training step), and a user's 0 wins."""
    stdout, stderr = fresh_process()
    assert stdout == "1"
    assert ONEDNN_NOTICE in stderr

    stdout, stderr = fresh_process(TF_ENABLE_ONEDNN_OPTS="0")
    assert stdout == "0"
    assert ONEDNN_NOTICE not in stderr
