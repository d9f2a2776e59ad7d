"""The SMPL-24 skeleton: joint names, parents, the male rest pose, forward kinematics, axis conversion.

Conventions used throughout the engine: y-up, metres, SMPL joint order, 60 fps unless a ``fps`` says
otherwise. Blender is z-up; the conversion happens once, in the Blender layer, with ``yup_to_zup``.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidMotionError
from .rotation import axis_angle_to_matrix

NUM_JOINTS = 24

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3",
    "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder", "l_elbow",
    "r_elbow", "l_wrist", "r_wrist", "l_hand", "r_hand",
)

PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21], dtype=np.int64
)

# Rest joints of the male SMPL model at betas = 0 (metres, y-up): what AIST++ and Bailando use.
REST_JOINTS = np.array(
    [
        [-0.00217368, -0.24078917, 0.02858379],
        [0.05640767, -0.32306921, 0.01091971],
        [-0.06248341, -0.33130249, 0.01504125],
        [0.00226577, -0.11638565, -0.00980143],
        [0.09985909, -0.70953866, 0.01895671],
        [-0.10574004, -0.71499040, 0.01019821],
        [0.00675421, 0.02157075, 0.01701890],
        [0.08506877, -1.13641324, -0.01847129],
        [-0.08668449, -1.13503590, -0.02436346],
        [0.00448963, 0.07760314, 0.01987395],
        [0.12612313, -1.19669905, 0.10357114],
        [-0.12152436, -1.19714156, 0.10595983],
        [-0.00890057, 0.28923867, -0.01359363],
        [0.07619208, 0.19160283, 0.00097578],
        [-0.07846403, 0.19007548, -0.00383344],
        [0.00121264, 0.37817601, 0.03681624],
        [0.19911349, 0.23680792, -0.01807022],
        [-0.19169235, 0.23692874, -0.01230551],
        [0.45444539, 0.22115890, -0.04101671],
        [-0.45181983, 0.22255946, -0.04357424],
        [0.72015464, 0.23385701, -0.04839144],
        [-0.72092819, 0.22935318, -0.04960100],
        [0.80684519, 0.22322098, -0.06398573],
        [-0.80968189, 0.22070161, -0.05970808],
    ],
    dtype=np.float64,
)

# Bailando's two codebooks: lower body (27 channels) and upper body (45 channels).
LOWER_JOINTS = np.array([0, 1, 2, 4, 5, 7, 8, 10, 11], dtype=np.int64)
UPPER_JOINTS = np.array([3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23], dtype=np.int64)

CHILDREN: tuple[tuple[int, ...], ...] = tuple(
    tuple(int(c) for c in np.nonzero(PARENTS == j)[0]) for j in range(NUM_JOINTS)
)

# y-up (SMPL/AIST++) -> z-up (Blender): (x, y, z) -> (x, -z, y).
YUP_TO_ZUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

# Named joint groups (indices into JOINT_NAMES), so no module spells them as numbers.
ANKLES = np.array([7, 8], dtype=np.int64)  # l_ankle, r_ankle
TOES = np.array([10, 11], dtype=np.int64)  # l_foot, r_foot (the toe joints)
FOOT_JOINTS = np.array([7, 8, 10, 11], dtype=np.int64)  # ankles and toes: what touches the floor
LEFT_FOOT = (7, 10)  # l_ankle, l_foot
RIGHT_FOOT = (8, 11)  # r_ankle, r_foot
# The SMPL toe joint sits at the ball of the foot, about 2 cm above the sole.
TOE_ABOVE_SOLE = 0.02
# Standing flat in the rest pose, the ankle joint is 6.1 cm above the toe joint: 8.1 cm above the sole.
ANKLE_ABOVE_SOLE = TOE_ABOVE_SOLE + float(np.mean(REST_JOINTS[ANKLES, 1] - REST_JOINTS[TOES, 1]))
LEGS = ((1, 4, 7), (2, 5, 8))  # (hip, knee, ankle), left then right
ARMS = ((16, 18, 20), (17, 19, 21))  # (shoulder, elbow, wrist), left then right
HAND_TIPS = np.array([22, 23], dtype=np.int64)  # l_hand, r_hand: beyond the wrists
# The joint that takes each joint's place in a left/right mirror image (x negated): l_* <-> r_*.
MIRRORED_JOINTS = np.array(
    [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22], dtype=np.int64
)




def check_joints(joints: np.ndarray, name: str = "joints", min_frames: int = 1) -> np.ndarray:
    """Validate SMPL joint positions (T, 24, 3), T >= ``min_frames``, finite; return them as float64."""
    arr = np.asarray(joints, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3) or arr.shape[0] < 1:
        raise InvalidMotionError(
            f"{name} must have shape (frames, {NUM_JOINTS}, 3) with at least one frame, got {arr.shape}"
        )
    if arr.shape[0] < min_frames:
        raise InvalidMotionError(f"a sequence needs at least {min_frames} frames, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise InvalidMotionError(f"{name} contain NaN or infinite values (first at frame {bad})")
    return arr


def facing_frame(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ahead, left) unit vectors (T, 3) on the floor of each frame's facing (``facing_direction``; left =
    up x ahead) for joints (T, 24, 3) y-up: the frame a partner's place is measured in."""
    ahead = facing_direction(joints)
    left = np.stack([ahead[:, 2], np.zeros(len(ahead)), -ahead[:, 0]], axis=1)
    return ahead, left


def mirror_joints(joints: np.ndarray) -> np.ndarray:
    """The left/right mirror image of joints (..., 24, 3): x -> -x, l_* <-> r_*."""
    out = np.asarray(joints)[..., MIRRORED_JOINTS, :].copy()
    out[..., 0] *= -1.0
    return out


def facing_direction(joints: np.ndarray) -> np.ndarray:
    """Where the body faces on the floor: the horizontal unit vector (..., 3) perpendicular to the hips'
    line (left hip minus right hip, crossed with up), for joints (..., 24, 3) y-up. The rest pose faces
    +z (SMPL's forward)."""
    joints = np.asarray(joints, dtype=np.float64)
    across = joints[..., 1, :] - joints[..., 2, :]  # l_hip - r_hip
    facing = np.cross(across, np.array([0.0, 1.0, 0.0]))
    facing[..., 1] = 0.0
    return facing / np.maximum(np.linalg.norm(facing, axis=-1, keepdims=True), 1e-12)


def bone_directions(joints: np.ndarray) -> np.ndarray:
    """Unit direction of each bone, parent -> joint: (..., 24, 3) -> (..., 24, 3); row 0 (root) is zero."""
    joints = np.asarray(joints, dtype=np.float64)
    dirs = np.zeros_like(joints)
    vec = joints[..., 1:, :] - joints[..., PARENTS[1:], :]  # (..., 23, 3)
    dirs[..., 1:, :] = vec / np.maximum(np.linalg.norm(vec, axis=-1, keepdims=True), 1e-12)
    return dirs


def joint_index(name: str) -> int:
    return JOINT_NAMES.index(name)


def bone_offsets(rest_joints: np.ndarray = REST_JOINTS) -> np.ndarray:
    """Offset of each joint from its parent in the rest pose (24, 3); the root's offset is its position."""
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    off = rest_joints.copy()
    off[1:] = rest_joints[1:] - rest_joints[PARENTS[1:]]
    return off


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Length of each bone (joint j to its parent) for joints (..., 24, 3) -> (..., 23)."""
    joints = np.asarray(joints)
    return np.linalg.norm(joints[..., 1:, :] - joints[..., PARENTS[1:], :], axis=-1)


def forward_kinematics_matrices(
    rotations: np.ndarray, translation: np.ndarray | None = None, rest_joints: np.ndarray = REST_JOINTS
) -> tuple[np.ndarray, np.ndarray]:
    """FK from local rotation matrices (T, 24, 3, 3) -> (joints (T, 24, 3), global rotations (T, 24, 3, 3)).

    Matches ``smplx.SMPL(gender='male').joints[:, :24]`` at betas = 0:
    ``X_0 = J_0 + transl``, ``X_j = X_parent + G_parent (J_j - J_parent)``, ``G_j = G_parent R_j``.
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    n = rotations.shape[0]
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    offsets = bone_offsets(rest_joints)
    glob = np.empty_like(rotations)
    joints = np.empty((n, NUM_JOINTS, 3))
    glob[:, 0] = rotations[:, 0]
    joints[:, 0] = rest_joints[0]
    if translation is not None:
        joints[:, 0] += np.asarray(translation, dtype=np.float64)
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        glob[:, j] = glob[:, p] @ rotations[:, j]
        joints[:, j] = joints[:, p] + glob[:, p] @ offsets[j]
    return joints, glob


def forward_kinematics(
    poses: np.ndarray, translation: np.ndarray | None = None, rest_joints: np.ndarray = REST_JOINTS
) -> np.ndarray:
    """FK from SMPL axis-angle poses (T, 72) or (T, 24, 3) and translation (T, 3) -> joints (T, 24, 3)."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    joints, _ = forward_kinematics_matrices(axis_angle_to_matrix(poses), translation, rest_joints)
    return joints


def yup_to_zup(points: np.ndarray) -> np.ndarray:
    """(..., 3) y-up -> z-up: (x, y, z) -> (x, -z, y)."""
    p = np.asarray(points)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def zup_to_yup(points: np.ndarray) -> np.ndarray:
    """(..., 3) z-up -> y-up: (x, y, z) -> (x, z, -y)."""
    p = np.asarray(points)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)
