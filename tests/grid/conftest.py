"""Session fixtures of the grid tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.grid.grid_helpers import write_tiny_data


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.csv (32 rows) and dev.csv (16 rows), three labels, in a session folder."""
    return write_tiny_data(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One on-disk token cache for the session, so each test tokenizes the tiny data once."""
    return tmp_path_factory.mktemp("token_cache")
