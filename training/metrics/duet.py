"""How a couple dances together: the duet measures of issue #15 (after Duolando's), on world joints.

Every function takes the leader's and the follower's joints (T, 24, 3) at 60 fps, y-up metres, in one
world frame, and returns a number (or per-frame values) that the real couples give a range for.

* placement: the distance between the pelvises on the floor; the follower in front of the leader;
  both facing each other; torsos too close (bodies through each other);
* reaction: hand contact; BED (beat echo degree: each of the leader's motion beats scored
  exp(-d^2 / 18) with d the distance in frames at 30 fps to the follower's nearest motion beat,
  averaged); the correlation of the two dancers' speeds;
* not a copy: the distance of the follower's pose to the leader's mirrored pose.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.stats import wasserstein_distance

from engine.beats import mean_joint_speed_per_frame, motion_beats
from engine.skeleton import JOINT_NAMES, facing_direction, mirror_joints

HANDS = [JOINT_NAMES.index(n) for n in ("l_wrist", "r_wrist", "l_hand", "r_hand")]
TORSO = [JOINT_NAMES.index(n) for n in ("spine1", "spine2", "spine3")]
CONTACT_M = 0.10
TORSO_CLASH_M = 0.20
BED_SIGMA2 = 18.0  # exp(-d^2 / 18), d in frames at 30 fps (Duolando)


def pelvis_distance(leader: np.ndarray, follower: np.ndarray) -> np.ndarray:
    """(T,) distance between the two pelvises on the floor plane (metres)."""
    return np.linalg.norm((follower[:, 0] - leader[:, 0])[:, [0, 2]], axis=1)


def distance_w1(distances: np.ndarray, real: np.ndarray) -> float:
    """Wasserstein-1 distance (metres) between two sets of pelvis distances."""
    return float(wasserstein_distance(np.asarray(distances).ravel(), np.asarray(real).ravel()))


def in_front_share(leader: np.ndarray, follower: np.ndarray, ahead_m: float = 0.2) -> float:
    """Share of frames with the follower more than ``ahead_m`` in front of the leader (along his facing)."""
    offset = follower[:, 0] - leader[:, 0]
    return float(((offset * facing_direction(leader)).sum(axis=1) > ahead_m).mean())


def facing_each_other_share(leader: np.ndarray, follower: np.ndarray) -> float:
    """Share of frames where the two face each other (the cosine of their facings below -0.5)."""
    return float(((facing_direction(leader) * facing_direction(follower)).sum(axis=1) < -0.5).mean())


def torso_clash_share(leader: np.ndarray, follower: np.ndarray) -> float:
    """Share of frames where a torso joint of one comes within ``TORSO_CLASH_M`` of one of the other's."""
    gaps = np.linalg.norm(leader[:, TORSO][:, :, None] - follower[:, TORSO][:, None], axis=-1)
    return float((gaps.min(axis=(1, 2)) < TORSO_CLASH_M).mean())


def hand_contact_share(leader: np.ndarray, follower: np.ndarray) -> float:
    """Share of frames where a hand of one is within ``CONTACT_M`` of a hand of the other."""
    gaps = np.linalg.norm(leader[:, HANDS][:, :, None] - follower[:, HANDS][:, None], axis=-1)
    return float((gaps.min(axis=(1, 2)) < CONTACT_M).mean())


def beat_echoes(leader: np.ndarray, follower: np.ndarray, fps: float = 60.0) -> np.ndarray:
    """Per leader motion beat, exp(-d^2 / 18) (d: frames at 30 fps to the follower's nearest motion beat;
    0 when the follower has none): the terms BED averages."""
    lead, follow = motion_beats(leader), motion_beats(follower)
    if not len(lead) or not len(follow):
        return np.zeros(len(lead))
    d = np.abs(lead[:, None] - follow[None, :]).min(axis=1) * (30.0 / fps)  # frames at 30 fps
    return np.exp(-(d**2) / BED_SIGMA2)


def beat_echo_degree(leader: np.ndarray, follower: np.ndarray, fps: float = 60.0) -> float:
    """BED: the leader's motion beats echoed by the follower's (see the module docstring); nan when the
    leader has no beat."""
    echoes = beat_echoes(leader, follower, fps)
    return float(echoes.mean()) if len(echoes) else float("nan")


def speed_correlation(leader: np.ndarray, follower: np.ndarray, sigma_frames: float = 5.0) -> float:
    """Pearson correlation of the two dancers' mean joint speeds (smoothed over ``sigma_frames``)."""
    a = gaussian_filter1d(mean_joint_speed_per_frame(leader), sigma_frames)
    b = gaussian_filter1d(mean_joint_speed_per_frame(follower), sigma_frames)
    return float(np.corrcoef(a, b)[0, 1])


def _facing_normalised(joints: np.ndarray) -> np.ndarray:
    """Root-relative poses (T, 24, 3) turned so that each frame faces +z."""
    facing = facing_direction(joints)
    angle = np.arctan2(facing[:, 0], facing[:, 2])  # turn by -angle about +y
    c, s = np.cos(-angle), np.sin(-angle)
    rel = joints - joints[:, :1]
    x, z = rel[..., 0], rel[..., 2]
    out = rel.copy()
    out[..., 0] = c[:, None] * x + s[:, None] * z
    out[..., 2] = -s[:, None] * x + c[:, None] * z
    return out


def mirror_copy_distance(leader: np.ndarray, follower: np.ndarray) -> float:
    """Mean joint distance (metres) between the follower's pose and the leader's mirror image, both
    root-relative and turned to face +z: near 0 for a follower who only mirrors the leader."""
    mirrored = mirror_joints(leader)
    return float(np.linalg.norm(_facing_normalised(follower) - _facing_normalised(mirrored), axis=-1).mean())


def duet_measures(leader: np.ndarray, follower: np.ndarray, fps: float = 60.0) -> dict[str, float]:
    """Every per-couple measure above (the distance distribution is returned by ``pelvis_distance``)."""
    return {
        "median_distance_m": float(np.median(pelvis_distance(leader, follower))),
        "in_front": in_front_share(leader, follower),
        "facing_each_other": facing_each_other_share(leader, follower),
        "torso_clash": torso_clash_share(leader, follower),
        "hand_contact": hand_contact_share(leader, follower),
        "bed": beat_echo_degree(leader, follower, fps),
        "speed_correlation": speed_correlation(leader, follower),
        "mirror_copy_distance_m": mirror_copy_distance(leader, follower),
    }
