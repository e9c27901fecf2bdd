"""The process-wide TensorFlow settings `import xtune` makes before TensorFlow loads."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from xtune import X86_MACHINES

ONEDNN_NOTICE = "oneDNN custom operations are on"


def probe(output: Path, **env: str) -> str:
    """Run tests/onednn_probe.py in a fresh interpreter with TensorFlow's start-up log on;
    its stderr."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="0", **env)
    done = subprocess.run(
        [sys.executable, "-m", "tests.onednn_probe", str(output)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.mark.skipif(
    platform.machine().lower() not in X86_MACHINES, reason="oneDNN default is for x86"
)
def test_onednn_kernels_are_on_by_default_keep_the_numbers_and_a_users_0_wins(tmp_path):
    """TensorFlow turns oneDNN on by itself only on AVX-512 class x86 CPUs; xtune asks for it on
    every x86 CPU (1.3x on an AVX2-only CPU's training step). Logits and gradients of a small
    classifier agree with the Eigen kernels' to 1e-5 of each array's largest value (measured:
    4e-7, a few float32 roundings; a gradient that is zero in exact arithmetic, a key bias's,
    within 1e-10)."""
    assert ONEDNN_NOTICE in probe(tmp_path / "onednn.npz")  # TensorFlow's own start-up notice
    assert ONEDNN_NOTICE not in probe(tmp_path / "eigen.npz", TF_ENABLE_ONEDNN_OPTS="0")

    onednn, eigen = np.load(tmp_path / "onednn.npz"), np.load(tmp_path / "eigen.npz")
    assert sorted(onednn.files) == sorted(eigen.files) and "logits" in onednn.files
    for name in eigen.files:
        scale = float(np.abs(eigen[name]).max())
        np.testing.assert_allclose(onednn[name], eigen[name], rtol=0, atol=1e-5 * scale + 1e-10)
