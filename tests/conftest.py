"""Shared test fixtures: the benchmark files in ../shared/data (never copied into the project)."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data. In CI (CI=true) its absence is a failure, elsewhere a skip."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"benchmark data missing: {SHARED_DATA}")
        pytest.skip(f"benchmark data not present at {SHARED_DATA}")
    return SHARED_DATA
