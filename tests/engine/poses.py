"""Random SMPL poses for the tests and benchmarks of the rotation solver."""

from __future__ import annotations

import numpy as np

from engine.joint_rotations import HINGES
from engine.rotation import axis_angle_to_matrix
from engine.skeleton import NUM_JOINTS


def random_smpl_poses(num_frames: int, seed: int = 0, scale: float = 0.3) -> np.ndarray:
    """Plausible random SMPL local rotations (T, 24, 3, 3) for tests and benchmarks.

    Small random rotations everywhere, knees and elbows bent about their flexion hinge by 20-120 degrees.
    """
    rng = np.random.default_rng(seed)
    aa = rng.normal(scale=scale, size=(num_frames, NUM_JOINTS, 3))
    for c, _, axis in HINGES.values():
        bend = np.radians(rng.uniform(20.0, 120.0, size=num_frames))
        aa[:, c] = bend[:, None] * np.asarray(axis) + rng.normal(scale=0.05, size=(num_frames, 3))
    return axis_angle_to_matrix(aa)
