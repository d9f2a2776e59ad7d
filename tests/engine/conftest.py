"""Fixtures of the engine tests that compare with the official implementation (golden vectors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")  # per module: torch.from_numpy shares memory with these arrays
def golden_io(golden_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of tiny_official_io.npz (inputs and outputs of the tiny official models)."""
    with np.load(golden_dir / "tiny_official_io.npz") as io:
        return {name: io[name] for name in io.files}
