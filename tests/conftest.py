"""Shared fixtures: where the real data and the golden vectors live, skipping cleanly when absent.

The project never commits ``../shared``; point ``DANCE_SHARED`` elsewhere to use another copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DANCE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
GOLDEN = SHARED / "reference" / "golden"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data is not part of the repository)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(DATA)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _need(GOLDEN)


@pytest.fixture(scope="session")
def music_dir() -> Path:
    return _need(DATA / "music")


@pytest.fixture(scope="session")
def aistpp_slices_dir() -> Path:
    return _need(DATA / "aistpp_slices")
