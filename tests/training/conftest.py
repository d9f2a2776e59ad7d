"""Fixtures of the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")  # per module: a test that changed an array could not affect another module
def golden(golden_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The metrics' golden vectors: (arrays of metrics_io.npz, metrics_expected.json)."""
    with np.load(golden_dir / "metrics_io.npz") as data:
        arrays = {k: data[k] for k in data.files}
    expected = json.loads((golden_dir / "metrics_expected.json").read_text())
    return arrays, expected
