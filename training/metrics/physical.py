"""Physical plausibility metrics of a dance: PFC, foot skating, ground contact, jitter, speed, freezing.

All functions take world joints (T, 24, 3) in metres, **y-up**, SMPL joint order, and their frame rate.
Each figure is defined so that it does not depend on the frame rate (except where stated), so 60 fps
output and 30 fps data can be compared.

Definitions (foot joints = left/right ankle 7/8 and toes 10/11; "horizontal" = the x-z plane):

* ``mean_joint_speed``: mean over frames and joints of |p[t+1] - p[t]| * fps, in m/s.
* ``jitter``: mean over frames and joints of the jerk magnitude |third finite difference| * fps^3,
  in m/s^3 (smooth motion has low jerk; frame-to-frame noise raises it steeply).
* ``foot_skating_ratio``: share of frame transitions t -> t+1 in which at least one foot joint is in
  contact -- less than ``CONTACT_HEIGHT`` (5 cm) above its own floor level at both t and t+1 -- and yet
  moves horizontally faster than ``SKATING_SPEED`` (0.5 m/s, i.e. 2.5 cm per frame at 20 fps, the usual
  GMD/Lodge-style threshold). A joint's floor level is a low percentile (5 %) of its height over the
  sequence, so the measure is independent of where the data put the floor and of the joint's height
  above the sole (ankles sit higher than toes).
* ``ground_contact_ratio``: share of frames in which at least one foot joint is in contact (as above).
* ``floor_range_m``: max - min over 1 s windows of the lowest foot-joint height in the window. A dancer
  who keeps touching the same floor scores ~0; a body that slowly floats up or sinks scores the drift.
* ``longest_frozen_s``: the longest run of consecutive transitions whose mean joint speed is below
  ``FROZEN_SPEED`` (0.05 m/s), in seconds.
* ``pfc``: EDGE's Physical Foot Contact score, x 1e4 (lower is better). EDGE computes it on 30 fps z-up
  clips: root acceleration a[t] from second differences of the root at 30 fps, its vertical component
  clamped at >= 0, |a| normalised by the clip's maximum; per foot the smaller horizontal displacement
  (metres per 30 fps frame) of ankle and toe; score = mean_t(min_left * min_right * a_norm) * 1e4.
  Adaptation here: the clip is first resampled to 30 fps (linear; at 60 fps this is every other frame),
  and y, not z, is the vertical axis, so the numbers are on EDGE's scale. Because of the per-clip
  maximum the score depends on clip length; :func:`pfc` averages it over 5 s windows with a 2.5 s
  stride (EDGE's protocol), or over the whole clip when it is shorter than 5 s.
"""

from __future__ import annotations

import numpy as np

from engine.checkpoint import ANY_STYLE
from engine.postprocess import resample_joints
from engine.skeleton import FOOT_JOINTS, LEFT_FOOT, RIGHT_FOOT

from .features import check_joints

UP_AXIS = 1  # y-up
HORIZONTAL_AXES = (0, 2)
ROOT = 0

CONTACT_HEIGHT = 0.05  # metres above the joint's own floor level
FLOOR_PERCENTILE = 5.0
SKATING_SPEED = 0.5  # m/s
FROZEN_SPEED = 0.05  # m/s, mean over joints
FLOOR_WINDOW_S = 1.0
PFC_FPS = 30.0
PFC_WINDOW_S = 5.0
PFC_STRIDE_S = 2.5
MIN_FRAMES = 2  # one frame-to-frame step


def resample_linear(joints: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """(T, J, 3) from ``src_fps`` to ``dst_fps`` inside the same time span (2:1 picks every other frame)."""
    return resample_joints(joints, src_fps, dst_fps, within_span=True)


def frame_speeds(joints: np.ndarray, fps: float) -> np.ndarray:
    """(T-1,) mean joint speed of each transition, m/s."""
    joints = check_joints(joints, MIN_FRAMES)
    return np.linalg.norm(np.diff(joints, axis=0), axis=-1).mean(axis=1) * fps


def mean_joint_speed(joints: np.ndarray, fps: float) -> float:
    return float(frame_speeds(joints, fps).mean())


def style_speed(clips, style: str) -> float | None:
    """Mean of the mean joint speeds (m/s) of the 60 fps ``clips`` (with ``.joints`` and ``.style``) of
    ``style`` ("any": every clip); None when none is of that style. The speed a style's dances aim at
    (choose-start, the actor-critic stage's speed reward)."""
    takes = [c.joints for c in clips if style == ANY_STYLE or c.style == style]
    return float(np.mean([mean_joint_speed(j, 60.0) for j in takes])) if takes else None


def jitter(joints: np.ndarray, fps: float) -> float:
    """Mean jerk magnitude, m/s^3 (0.0 for fewer than 4 frames)."""
    joints = check_joints(joints, MIN_FRAMES)
    if joints.shape[0] < 4:
        return 0.0
    jerk = np.diff(joints, n=3, axis=0) * fps**3  # (T-3, J, 3)
    return float(np.linalg.norm(jerk, axis=-1).mean())


def _foot_heights(joints: np.ndarray) -> np.ndarray:
    """(T, 4) height of each foot joint above its own floor level (a low percentile of its height)."""
    y = joints[:, FOOT_JOINTS, UP_AXIS]  # (T, 4)
    return y - np.percentile(y, FLOOR_PERCENTILE, axis=0)


def foot_contacts(joints: np.ndarray) -> np.ndarray:
    """(T, 4) bool: foot joint within ``CONTACT_HEIGHT`` of its floor level."""
    return _foot_heights(check_joints(joints, MIN_FRAMES)) < CONTACT_HEIGHT


def foot_skating_ratio(joints: np.ndarray, fps: float) -> float:
    """Share of transitions where some foot joint is in contact at both ends yet slides > 0.5 m/s."""
    joints = check_joints(joints, MIN_FRAMES)
    contact = foot_contacts(joints)
    both = contact[1:] & contact[:-1]  # (T-1, 4)
    feet = joints[:, FOOT_JOINTS][:, :, HORIZONTAL_AXES]  # (T, 4, 2)
    speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * fps  # (T-1, 4)
    return float((both & (speed > SKATING_SPEED)).any(axis=1).mean())


def ground_contact_ratio(joints: np.ndarray) -> float:
    """Share of frames where at least one foot joint touches its floor level."""
    return float(foot_contacts(joints).any(axis=1).mean())


def floor_range(joints: np.ndarray, fps: float) -> float:
    """Spread (m) of the per-window lowest foot height over 1 s windows: ~0 when the floor stays put."""
    joints = check_joints(joints, MIN_FRAMES)
    lowest = joints[:, FOOT_JOINTS, UP_AXIS].min(axis=1)  # (T,)
    win = max(1, int(round(FLOOR_WINDOW_S * fps)))
    n = int(np.ceil(len(lowest) / win))
    minima = np.array([lowest[i * win : (i + 1) * win].min() for i in range(n)])
    return float(minima.max() - minima.min())


def longest_frozen_seconds(joints: np.ndarray, fps: float) -> float:
    """Longest run of transitions with mean joint speed below ``FROZEN_SPEED``, in seconds."""
    still = frame_speeds(joints, fps) < FROZEN_SPEED
    longest = run = 0
    for s in still:  # T is at most a few thousand: a plain loop is fine
        run = run + 1 if s else 0
        longest = max(longest, run)
    return longest / float(fps)


def _pfc_clip(joints30: np.ndarray) -> float:
    """EDGE's PFC (x 1e4) of one clip already at 30 fps, y-up."""
    dt = 1.0 / PFC_FPS
    root_v = np.diff(joints30[:, ROOT], axis=0) / dt  # (T-1, 3)
    root_a = np.diff(root_v, axis=0) / dt  # (T-2, 3)
    root_a[:, UP_AXIS] = np.maximum(root_a[:, UP_AXIS], 0.0)  # only upward acceleration counts
    root_a = np.linalg.norm(root_a, axis=-1)
    peak = root_a.max()
    if peak <= 0.0:
        return 0.0  # the root never accelerates: nothing to support
    root_a = root_a / peak
    feet = joints30[:, LEFT_FOOT + RIGHT_FOOT][:, :, HORIZONTAL_AXES]  # (T, 4, 2)
    foot_v = np.linalg.norm(feet[2:] - feet[1:-1], axis=-1)  # (T-2, 4) metres per 30 fps frame
    left = np.minimum(foot_v[:, 0], foot_v[:, 1])
    right = np.minimum(foot_v[:, 2], foot_v[:, 3])
    return float((left * right * root_a).mean() * 1e4)


def pfc(joints: np.ndarray, fps: float, *, window_s: float | None = PFC_WINDOW_S) -> float:
    """EDGE's PFC of a clip (see the module docstring), averaged over 5 s windows (2.5 s stride).

    ``window_s=None`` scores the whole clip at once.
    """
    joints30 = resample_linear(check_joints(joints, MIN_FRAMES), fps, PFC_FPS)
    if joints30.shape[0] < 4:
        raise ValueError("PFC needs at least 4 frames at 30 fps")
    if window_s is None:
        return _pfc_clip(joints30)
    win = int(round(window_s * PFC_FPS))
    stride = int(round(PFC_STRIDE_S * PFC_FPS))
    if joints30.shape[0] <= win:
        return _pfc_clip(joints30)
    starts = range(0, joints30.shape[0] - win + 1, stride)
    return float(np.mean([_pfc_clip(joints30[s : s + win]) for s in starts]))


def physical_metrics(joints: np.ndarray, fps: float) -> dict[str, float]:
    """Every figure of this module for one dance, as a flat dict of floats."""
    joints = check_joints(joints, min_frames=4)
    return {
        "mean_joint_speed": mean_joint_speed(joints, fps),
        "foot_skating_ratio": foot_skating_ratio(joints, fps),
        "ground_contact_ratio": ground_contact_ratio(joints),
        "floor_range_m": floor_range(joints, fps),
        "jitter": jitter(joints, fps),
        "longest_frozen_s": longest_frozen_seconds(joints, fps),
        "pfc": pfc(joints, fps),
    }
