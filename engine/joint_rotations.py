"""Positions -> rotations: an analytic solver from SMPL-24 joint positions to local joint rotations.

Bailando decodes joint *positions*; Blender, BVH and FBX want *rotations*. Every bone direction is
observable from 24 joints, the twist about a bone mostly is not. The solver (docs/REFERENCE.md §5.2):

1. pelvis and spine3 have three children each, so their full rotation is the Kabsch/SVD fit of the rest
   child offsets onto the posed ones;
2. hips and shoulders have one child but a hinge below them (knee, elbow): the thigh/upper arm twist is
   the one that puts the knee/elbow flexion axis on the normal of the posed limb plane. This is exact for
   a pure hinge; it needs a bent limb (> ``HINGE_MIN_BEND``), otherwise the last local twist is held;
3. other joints with one child get the shortest-arc swing on top of their parent's global rotation;
4. leaves (head, toes, hand tips) keep the parent's orientation (identity local rotation).

Then ``R_local = R_global(parent)^T R_global(j)``. Everything is vectorised over frames; the loop runs
over the 24 joints only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidMotionError
from .postprocess import true_runs
from .rotation import (
    axis_angle_to_matrix,
    best_rotation,
    make_continuous,
    matrix_to_quaternion,
    rotation_between,
    slerp_matrices,
)
from .skeleton import CHILDREN, NUM_JOINTS, PARENTS, REST_JOINTS, bone_lengths, bone_offsets, check_joints

_EPS = 1e-12

# Below this knee/elbow bend the limb plane is too ill-defined to read the twist from (degrees).
HINGE_MIN_BEND = 15.0
# A limb that never bends more than this (degrees) between two straight phases may be hyperextended.
HYPEREXTENSION_MAX = 35.0

# Limb hinges: joint -> (child with the hinge, grandchild, flexion axis in the joint's rest frame).
# SMPL faces +z with y up: knees flex about +x (shin goes back); the left elbow flexes about -y and the
# right about +y (forearm comes forward).
HINGES: dict[int, tuple[int, int, tuple[float, float, float]]] = {
    1: (4, 7, (1.0, 0.0, 0.0)),  # l_hip -> l_knee -> l_ankle
    2: (5, 8, (1.0, 0.0, 0.0)),  # r_hip -> r_knee -> r_ankle
    16: (18, 20, (0.0, -1.0, 0.0)),  # l_shoulder -> l_elbow -> l_wrist
    17: (19, 21, (0.0, 1.0, 0.0)),  # r_shoulder -> r_elbow -> r_wrist
}


@dataclass
class RotationSolution:
    """Local rotations that reproduce a joint sequence with FK on ``rest_joints``.

    rotations:        (T, 24, 4) local joint rotations, unit quaternions w-first, continuous in time.
    translation:      (T, 3) root translation: ``joints[:, 0] - rest_joints[0]``.
    rest_joints:      (24, 3) rest skeleton the rotations refer to.
    global_rotations: (T, 24, 3, 3) world rotation of every joint (what FK composes the local ones into).
    """

    rotations: np.ndarray
    translation: np.ndarray
    rest_joints: np.ndarray
    global_rotations: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])


# --- small vector helpers ------------------------------------------------------------------------------
def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def _frame(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frames (..., 3, 3) with columns (primary, secondary made orthogonal, their cross)."""
    e1 = _normalize(primary)
    e2 = _normalize(secondary - np.sum(secondary * e1, axis=-1, keepdims=True) * e1)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=-1)


def _align_two(rest_p: np.ndarray, rest_s: np.ndarray, posed_p: np.ndarray, posed_s: np.ndarray) -> np.ndarray:
    """Rotation taking rest_p exactly onto posed_p and rest_s as close as possible onto posed_s."""
    return _frame(posed_p, posed_s) @ np.swapaxes(_frame(rest_p, rest_s), -1, -2)


def _hinge_angle(rest_upper: np.ndarray, rest_lower: np.ndarray, axis: np.ndarray, cos_bend: np.ndarray,
                 branch: float = 1.0) -> np.ndarray:
    """Hinge angle theta (T,) of a child whose local rotation R_axis(theta) bends the limb by the measured bend.

    ``cos_bend = u . R_axis(theta) l = alpha*beta + P cos(theta) + Q sin(theta)``; ``branch`` +1 takes the
    flexing solution, -1 the hyperextended one.
    """
    u = rest_upper / np.linalg.norm(rest_upper)
    l = rest_lower / np.linalg.norm(rest_lower)
    beta = float(l @ axis)
    w = l - beta * axis
    alpha, p, q = float(u @ axis), float(u @ w), float(u @ np.cross(axis, w))
    phi = np.arctan2(q, p)  # theta of the straightest configuration
    return phi + branch * np.arccos(np.clip((cos_bend - alpha * beta) / max(np.hypot(p, q), _EPS), -1.0, 1.0))


def _hinge_rest_normal(rest_upper: np.ndarray, rest_lower: np.ndarray, axis: np.ndarray,
                       theta: np.ndarray) -> np.ndarray:
    """Limb-plane normal normalize(u x R_axis(theta) l), (T, 3), in the upper bone's rest frame."""
    u = rest_upper / np.linalg.norm(rest_upper)
    l = rest_lower / np.linalg.norm(rest_lower)
    beta = float(l @ axis)
    w = l - beta * axis  # part of l that the hinge turns
    aw = np.cross(axis, w)
    lower = beta * axis + np.cos(theta)[:, None] * w + np.sin(theta)[:, None] * aw  # (T, 3)
    return _normalize(np.cross(u, lower))


def estimate_rest_skeleton(joints: np.ndarray) -> np.ndarray:
    """SMPL rest directions scaled to the per-bone median length of ``joints`` (T, 24, 3) -> (24, 3).

    Generated joints have bone-length jitter; the median makes one consistent rest skeleton. The pelvis
    stays at the SMPL rest pelvis so that ``translation`` has the same meaning as for real SMPL data.
    """
    joints = check_joints(joints)
    lengths = np.median(bone_lengths(joints), axis=0)  # (23,)
    smpl_offsets = bone_offsets(REST_JOINTS)
    smpl_lengths = np.linalg.norm(smpl_offsets[1:], axis=-1)
    lengths = np.where(lengths > 1e-6, lengths, smpl_lengths)  # collapsed bones keep the SMPL length
    rest = np.empty((NUM_JOINTS, 3))
    rest[0] = REST_JOINTS[0]
    for j in range(1, NUM_JOINTS):
        rest[j] = rest[PARENTS[j]] + smpl_offsets[j] / smpl_lengths[j - 1] * lengths[j - 1]
    return rest


def solve_global_rotations(joints: np.ndarray, rest_joints: np.ndarray) -> np.ndarray:
    """World rotation of every joint (T, 24, 3, 3) that turns the rest bones onto the posed ones."""
    n = joints.shape[0]
    offsets = bone_offsets(rest_joints)  # (24, 3) child offsets in the parent's rest frame
    glob = np.empty((n, NUM_JOINTS, 3, 3))
    eye = np.broadcast_to(np.eye(3), (n, 3, 3))
    cos_min = np.cos(np.radians(HINGE_MIN_BEND))
    hinge_angles = {}  # knee/elbow -> (hinge axis, angle (T,))
    for j in range(NUM_JOINTS):
        parent_rot = glob[:, PARENTS[j]] if j > 0 else eye
        children = CHILDREN[j]
        if len(children) == 0:  # leaf: its orientation is unobservable
            glob[:, j] = parent_rot
        elif len(children) > 1:  # pelvis, spine3: three children fix the whole rotation
            rest_dirs = _normalize(offsets[list(children)])  # (K, 3)
            posed_dirs = _normalize(joints[:, list(children)] - joints[:, j : j + 1])  # (T, K, 3)
            glob[:, j] = best_rotation(rest_dirs, posed_dirs)
        else:
            c = children[0]
            posed_bone = joints[:, c] - joints[:, j]  # (T, 3)
            # Shortest-arc swing on top of the parent: the minimal-twist answer.
            current = parent_rot @ offsets[c]
            glob[:, j] = rotation_between(current, posed_bone) @ parent_rot
            if j in HINGES:
                glob[:, j], theta = _hinge_rotation(joints, offsets, j, parent_rot, glob[:, j], cos_min)
                if theta is not None:
                    hinge_angles[HINGES[j][0]] = (np.asarray(HINGES[j][2]), theta)
            elif j in hinge_angles:
                # Knee/elbow: the hinge rotation itself, swung by what the data adds beyond a pure hinge.
                axis, theta = hinge_angles[j]
                hinge = parent_rot @ axis_angle_to_matrix(theta[:, None] * axis)
                glob[:, j] = rotation_between(hinge @ offsets[c], posed_bone) @ hinge
    return glob


def _rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) of a^T b for rotation matrices (..., 3, 3)."""
    cos = (np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def _hinge_rotation(joints: np.ndarray, offsets: np.ndarray, j: int, parent_rot: np.ndarray,
                    swing: np.ndarray, cos_min: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Hip/shoulder rotation whose twist puts the knee/elbow flexion axis on the posed limb plane.

    Returns (global rotations (T, 3, 3), hinge angle of the knee/elbow (T,) or None when never bent).

    Frames where the limb is bent by more than ``HINGE_MIN_BEND`` come in runs; the twist between runs is
    interpolated (it cannot be seen on a straight limb), so it does not pop when a limb bends again. A run that
    never bends past ``HYPEREXTENSION_MAX`` may be a hyperextended limb (the limb plane flips): then the branch
    closer to the previous run's twist wins.
    """
    c, g, axis = HINGES[j]
    axis = np.asarray(axis)
    upper = _normalize(joints[:, c] - joints[:, j])  # (T, 3)
    lower = _normalize(joints[:, g] - joints[:, c])  # (T, 3)
    cos_bend = np.sum(upper * lower, axis=-1)  # (T,)
    valid = cos_bend < cos_min
    if not np.any(valid):
        return swing, None
    bend = np.degrees(np.arccos(np.clip(cos_bend, -1.0, 1.0)))  # (T,)
    out = swing.copy()
    posed_normal = np.cross(upper, lower)
    rest_bone = np.broadcast_to(offsets[c], (int(valid.sum()), 3))
    candidates, thetas = {}, {}
    for branch in (1.0, -1.0):
        thetas[branch] = _hinge_angle(offsets[c], offsets[g], axis, cos_bend, branch)  # (T,)
        rest_normal = _hinge_rest_normal(offsets[c], offsets[g], axis, thetas[branch][valid])
        cand = np.empty_like(swing)
        cand[valid] = _align_two(rest_bone, rest_normal, upper[valid], posed_normal[valid])
        candidates[branch] = cand
    theta = thetas[1.0].copy()
    local_at = {}  # frame -> local rotation at run boundaries
    for start, end in true_runs(valid):
        chosen = candidates[1.0][start:end]
        if local_at and bend[start:end].max() < HYPEREXTENSION_MAX:
            # Compare both branches with the twist carried over from the previous run.
            held = parent_rot[start] @ local_at[max(local_at)]
            held = rotation_between(held @ offsets[c], upper[start]) @ held
            hyper = candidates[-1.0][start:end]
            if _rotation_angle(held, hyper[0]) < _rotation_angle(held, chosen[0]):
                chosen = hyper
                theta[start:end] = thetas[-1.0][start:end]
        out[start:end] = chosen
        for t in (start, end - 1):
            local_at[t] = np.swapaxes(parent_rot[t], -1, -2) @ out[t]
    # Nearly straight limb (twist unobservable): hold the twist before the first and after the last bent run,
    # and between two runs turn the local twist evenly from one run's end to the next one's start.
    for gap_start, gap_end in true_runs(~valid):
        before = local_at.get(gap_start - 1)
        after = local_at.get(gap_end)
        frames = np.arange(gap_start, gap_end)
        if before is None or after is None:
            local = np.broadcast_to(after if before is None else before, (len(frames), 3, 3))
        else:
            weight = (frames - gap_start + 1) / (gap_end - gap_start + 1)
            local = slerp_matrices(np.broadcast_to(before, local_shape := (len(frames), 3, 3)),
                                   np.broadcast_to(after, local_shape), weight)
        guess = parent_rot[frames] @ local
        out[frames] = rotation_between(guess @ offsets[c], upper[frames]) @ guess
    return out, theta


def solve_rotations(joints: np.ndarray, rest_joints: np.ndarray | None = None) -> RotationSolution:
    """Joint positions (T, 24, 3) y-up metres -> local rotations on ``rest_joints`` (estimated when None).

    ``forward_kinematics_matrices(quaternion_to_matrix(rotations), translation, rest_joints)`` reproduces
    every bone direction of ``joints`` (exactly for the single-child bones, best fit at pelvis/spine3) and,
    when the bone lengths equal the rest skeleton's, every joint position.
    """
    joints = check_joints(joints)
    if rest_joints is None:
        rest_joints = estimate_rest_skeleton(joints)
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    if rest_joints.shape != (NUM_JOINTS, 3) or not np.all(np.isfinite(rest_joints)):
        raise InvalidMotionError(f"rest_joints must be a finite ({NUM_JOINTS}, 3) array, got shape {rest_joints.shape}")
    glob = solve_global_rotations(joints, rest_joints)  # (T, 24, 3, 3)
    local = glob.copy()
    local[:, 1:] = np.swapaxes(glob[:, PARENTS[1:]], -1, -2) @ glob[:, 1:]
    quats = make_continuous(matrix_to_quaternion(local), axis=0)  # (T, 24, 4)
    translation = joints[:, 0] - rest_joints[0]
    return RotationSolution(rotations=quats, translation=translation, rest_joints=rest_joints, global_rotations=glob)
