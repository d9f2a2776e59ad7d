"""Bone-direction operations on SMPL-24 joint sequences: rebuild with fixed lengths, resample rigidly.

A pose given as joint positions is, up to bone twist (which positions cannot show), a root position
plus one unit direction per bone. Rebuilding positions from the root down with the SMPL rest lengths
gives a sequence whose bone lengths equal the rest skeleton at every frame, which is what the models'
training data (AIST++ through SMPL forward kinematics) looks like.
"""

from __future__ import annotations

import numpy as np

from engine.skeleton import NUM_JOINTS, PARENTS, REST_JOINTS, bone_directions, bone_offsets

from .clip import resample_positions

# Rest length of the bone ending at joint j (index 0 unused: the root has no bone).
REST_BONE_LENGTHS = np.linalg.norm(bone_offsets(REST_JOINTS), axis=-1)
REST_BONE_LENGTHS[0] = 0.0


def build_from_directions(
    root: np.ndarray, directions: np.ndarray, lengths: np.ndarray = REST_BONE_LENGTHS
) -> np.ndarray:
    """Joints from the root (T, 3), unit bone directions (T, 24, 3) and bone lengths (24,) -> (T, 24, 3)."""
    root = np.asarray(root, dtype=np.float64)
    joints = np.empty((root.shape[0], NUM_JOINTS, 3))
    joints[:, 0] = root
    for j in range(1, NUM_JOINTS):  # parents come before children in SMPL order
        joints[:, j] = joints[:, PARENTS[j]] + lengths[j] * directions[:, j]
    return joints


def slerp_unit(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit vectors a, b (..., 3) with weights w (...,) in [0, 1]."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)[..., None]
    cos = np.clip(np.sum(a * b, axis=-1, keepdims=True), -1.0, 1.0)
    angle = np.arccos(cos)
    sin = np.sin(angle)
    small = sin < 1e-6  # (nearly) equal directions: the linear blend is exact enough
    safe = np.where(small, 1.0, sin)
    wa = np.where(small, 1.0 - w, np.sin((1.0 - w) * angle) / safe)
    wb = np.where(small, w, np.sin(w * angle) / safe)
    out = wa * a + wb * b
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def resample_skeleton(
    joints: np.ndarray, src_fps: float, dst_fps: float, lengths: np.ndarray = REST_BONE_LENGTHS
) -> np.ndarray:
    """Resample (T, 24, 3) joints keeping bone lengths: root linearly, bone directions by slerp.

    Linear interpolation of positions would shorten every bone at the inserted frames (by up to
    ``1 - cos(theta/2)`` of its length for a bone turning by theta between frames).
    """
    joints = np.asarray(joints, dtype=np.float64)
    n = joints.shape[0]
    root = resample_positions(joints[:, 0], src_fps, dst_fps)  # (T', 3)
    m = root.shape[0]
    t = np.arange(m) * (src_fps / dst_fps)
    i0 = np.minimum(np.floor(t).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = np.broadcast_to((t - i0)[:, None], (m, NUM_JOINTS))
    dirs = bone_directions(joints)
    new_dirs = slerp_unit(dirs[i0], dirs[i1], w)  # (T', 24, 3)
    new_dirs[:, 0] = 0.0
    return build_from_directions(root, new_dirs, lengths)
