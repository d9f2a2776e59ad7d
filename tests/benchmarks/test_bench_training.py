"""The training benchmark builds each stage's step from the stage's own code (partly constructed), so a
change to a stage can break it silently: it had, twice, before its GPU run (the GPT's style input, the
actor-critic's KL reference). One step of each at batch 1 keeps it honest."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_training  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(bench_training.PAPER_BATCH))
def test_each_stage_step_of_the_training_benchmark_runs(stage, one_thread):
    seconds = bench_training.time_steps(stage, 1, 1, torch.device("cpu"), amp=False)
    assert math.isfinite(seconds) and seconds > 0
