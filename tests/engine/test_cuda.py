"""The engine on a CUDA GPU: a seed makes the same dance there as on the CPU, variations in one batch are
the dances made one by one, and the command line's ``--device cuda`` writes its files.

Skipped where torch sees no CUDA device (CI has none); on a GPU machine: ``pytest tests/engine/test_cuda.py``.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.generate import Choreographer, GenerateOptions
from engine.sampling import SamplingOptions

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "assets" / "default_model"
DEMO_SONG = REPO / "assets" / "demo_song.ogg"


@pytest.fixture(scope="module")
def machines() -> tuple[Choreographer, Choreographer]:
    return Choreographer(DEFAULT_MODEL, device="cpu"), Choreographer(DEFAULT_MODEL, device="cuda")


@pytest.fixture(scope="module")
def demo_features(machines):
    return machines[0].features(DEMO_SONG)


@pytest.mark.parametrize("sampling", [SamplingOptions(seed=3), SamplingOptions(greedy=True),
                                      SamplingOptions(seed=3, fast=False)], ids=["seed", "greedy", "exact"])
def test_a_seed_makes_the_same_dance_on_cuda_as_on_the_cpu(machines, demo_features, sampling):
    """The draws come from the CPU's generator on every device (``sampling_generator``) and the GPU's
    float32 logits differ from the CPU's by rounding only: the same codes, the same poses within
    rounding (the VQ-VAE's convolutions may run in TF32 on the GPU)."""
    options = GenerateOptions(sampling=sampling)
    cpu, gpu = (m.generate(DEMO_SONG, options, features=demo_features) for m in machines)
    np.testing.assert_array_equal(gpu.codes_up, cpu.codes_up)
    np.testing.assert_array_equal(gpu.codes_down, cpu.codes_down)
    assert gpu.joints.shape == cpu.joints.shape
    np.testing.assert_allclose(gpu.joints, cpu.joints, atol=5e-3)  # metres


def test_variations_in_one_batch_on_cuda_are_the_dances_made_one_by_one(machines, demo_features):
    gpu = machines[1]
    options = [GenerateOptions(sampling=SamplingOptions(seed=s)) for s in (1, 2, 3)]
    options.append(replace(options[0], style="ballet"))  # a style-guided row pair in the same batch
    batch = gpu.generate_many(DEMO_SONG, options, features=demo_features)
    for o, dance in zip(options, batch):
        alone = gpu.generate(DEMO_SONG, o, features=demo_features)
        np.testing.assert_array_equal(dance.codes_up, alone.codes_up)
        np.testing.assert_array_equal(dance.codes_down, alone.codes_down)


def test_cli_on_cuda_writes_the_dance(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "engine", "generate", str(DEMO_SONG), "-o", str(out), "--device",
                           "cuda", "--formats", "npz,json", "-q"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = np.load(out / "demo_song.npz")
    assert data["joints"].shape[1:] == (24, 3) and np.isfinite(data["joints"]).all()
