"""Motion features of the Bailando / AIST++ evaluation: kinetic (72-d) and manual "geometric" (32-d).

Both take world joint positions (T, 24, 3) in metres, y-up, SMPL joint order, at 60 fps, and reproduce
the official numbers (float32 vectors) including their inherited quirks:

* kinetic: ``frame_time = 1/60``, a +-2-frame averaging window, and the acceleration term computed as
  ``(p[k+1] - p[k]) / dt - (p[k] - p[k-1] / dt)`` -- the division binds to ``p[k-1]`` only (the
  operator-precedence bug of the reference code), which makes that term depend on absolute position.
  That is why both sets are "zero-started" (:func:`zero_start`) before extraction.
* manual: 32 boolean relational features (Mueller-style) per frame t = 1..T-1, averaged. Thresholds are
  multiples of three lengths of the SMPL template skeleton, and velocities use ``1/120`` s per frame
  although the data are 60 fps (inherited).

Everything is vectorised over frames (and joints); a 1200-frame sequence takes a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.clock import MOTION_FPS
from engine.skeleton import check_joints as skeleton_check_joints

FRAME_TIME = 1.0 / MOTION_FPS  # kinetic features
MANUAL_TIME_PER_FRAME = 1.0 / 120.0  # manual features (inherited constant, not the data's frame time)
SLIDING_WINDOW = 2
KINETIC_DIM = 72
MANUAL_DIM = 32
MIN_FRAMES = 3  # the windowed acceleration needs a previous and a next frame

# SMPL template lengths (male, betas 0) the manual thresholds are scaled by.
_L_SHOULDER = np.array([1.99113488e-01, 2.36807942e-01, -1.80702247e-02])
_R_SHOULDER = np.array([-1.91692337e-01, 2.36928746e-01, -1.23055102e-02])
_L_ELBOW = np.array([4.54445392e-01, 2.21158922e-01, -4.10167128e-02])
_L_HIP = np.array([5.64076714e-02, -3.23069185e-01, 1.09197125e-02])
_R_HIP = np.array([-6.24834076e-02, -3.31302464e-01, 1.50412619e-02])
HUMERUS_LENGTH = float(np.linalg.norm(_L_SHOULDER - _L_ELBOW))  # hl ~ 0.2568
SHOULDER_WIDTH = float(np.linalg.norm(_L_SHOULDER - _R_SHOULDER))  # sw ~ 0.3908
HIP_WIDTH = float(np.linalg.norm(_L_HIP - _R_HIP))  # hw ~ 0.1192


def zero_start(joints: np.ndarray) -> np.ndarray:
    """Subtract the first frame's root position from every joint of every frame (the official protocol)."""
    joints = np.asarray(joints, dtype=np.float64)
    return joints - joints[:1, :1, :]


def check_joints(joints: np.ndarray, min_frames: int = MIN_FRAMES) -> np.ndarray:
    """``joints`` as float64 (T, 24, 3) with T >= ``min_frames`` (``engine.skeleton.check_joints``, which
    also refuses NaN); an ``InvalidMotionError`` (a ValueError) otherwise."""
    return skeleton_check_joints(joints, min_frames=min_frames)


# --- kinetic -----------------------------------------------------------------------------------------
def kinetic_features(joints: np.ndarray) -> np.ndarray:
    """72-d kinetic feature of one sequence: per joint [horizontal KE, vertical KE, energy expenditure].

    For every frame i = 1..T-1 and joint, with displacements d[k] = p[k] - p[k-1] summed over the window
    k = i-2..i+2 that stays inside the sequence (n_i terms):
      v_i = sum_k d[k] / (n_i * dt)                           (windowed average velocity)
      a_i = sum_k ((p[k+1]-p[k])/dt - (p[k] - p[k-1]/dt)) / dt / m_i   (bugged average acceleration,
                                                               k = i-2..i+2 with k-1 >= 0, k+1 <= T-1)
    horizontal KE = mean_i |v_i[x, z]|^2, vertical KE = mean_i v_i[y]^2, expenditure = mean_i |a_i|.
    """
    p = check_joints(joints)  # (T, J, 3)
    T = p.shape[0]
    i = np.arange(1, T)  # frames the official loop visits
    vel_sum = np.zeros((T - 1,) + p.shape[1:])
    vel_count = np.zeros(T - 1)
    acc_sum = np.zeros((T - 1,) + p.shape[1:])
    acc_count = np.zeros(T - 1)
    for j in range(-SLIDING_WINDOW, SLIDING_WINDOW + 1):  # ascending, like the reference summation
        k = i + j
        ok = (k - 1 >= 0) & (k < T)
        kk = np.clip(k, 1, T - 1)
        vel_sum[ok] += p[kk[ok]] - p[kk[ok] - 1]
        vel_count += ok
        ok = (k - 1 >= 0) & (k + 1 < T)
        kk = np.clip(k, 1, T - 2)
        ka = kk[ok]
        v2 = (p[ka + 1] - p[ka]) / FRAME_TIME
        v1 = p[ka] - p[ka - 1] / FRAME_TIME  # the inherited precedence bug, kept on purpose
        acc_sum[ok] += (v2 - v1) / FRAME_TIME
        acc_count += ok
    vel = vel_sum / (vel_count[:, None, None] * FRAME_TIME)  # (T-1, J, 3)
    horizontal = (vel[..., 0] ** 2 + vel[..., 2] ** 2).sum(axis=0) / (T - 1.0)  # (J,)
    vertical = (vel[..., 1] ** 2).sum(axis=0) / (T - 1.0)
    expenditure = np.linalg.norm(acc_sum / acc_count[:, None, None], axis=-1).sum(axis=0) / (T - 1.0)
    return np.stack([horizontal, vertical, expenditure], axis=1).reshape(-1).astype(np.float32)


# --- manual (geometric) ------------------------------------------------------------------------------
# Joint names of the relational features (SMPL order).
_NAMES = (
    "root", "lhip", "rhip", "belly", "lknee", "rknee", "spine", "lankle", "rankle", "chest", "ltoes",
    "rtoes", "neck", "linshoulder", "rinshoulder", "head", "lshoulder", "rshoulder", "lelbow", "relbow",
    "lwrist", "rwrist", "lhand", "rhand",
)


@dataclass(frozen=True)
class Relation:
    """One boolean relational feature: a kind, its points (joint names or virtual points), a threshold.

    Kinds (positions at frame t; velocities are (x[t] - x[t-1]) / dt with dt = 1/120; thresholds in
    metres, metres per second or degrees; all comparisons strict):
      plane  (a, b, c, p):   signed distance of p from the plane through a, b, c (normal (c-a) x (b-a)) > thr
      nplane (a, b, c, p):   signed distance of p from the plane through c with normal b - a > thr
      angle  (a, b, c, d):   lo < angle between b - a and d - c (degrees) < hi
      move   (a, b, p, x):   velocity of p (the THIRD point) relative to a, along b - a, > thr; the
                             fourth point is listed in the reference table but unused by its definition
                             (checked against the official vectors)
      nmove  (a, b, c, p):   velocity of p relative to a, along the normal (c-a) x (b-a), > thr
      fast   (p,):           speed of p > thr
    Virtual points: ``zero`` (origin), ``y_unit`` / ``minus_y_unit`` (0, +-1, 0), ``y_min`` (0, lowest
    joint height of the frame, 0).
    """

    kind: str
    points: tuple[str, ...]
    threshold: float = 0.0
    angle_range: tuple[float, float] = (0.0, 0.0)


_hl, _sw, _hw = HUMERUS_LENGTH, SHOULDER_WIDTH, HIP_WIDTH

MANUAL_RELATIONS: tuple[Relation, ...] = (
    Relation("nmove", ("neck", "rhip", "lhip", "rwrist"), 1.8 * _hl),
    Relation("nmove", ("neck", "lhip", "rhip", "lwrist"), 1.8 * _hl),
    Relation("nplane", ("chest", "neck", "neck", "rwrist"), 0.2 * _hl),
    Relation("nplane", ("chest", "neck", "neck", "lwrist"), 0.2 * _hl),
    Relation("move", ("belly", "chest", "chest", "rwrist"), 1.8 * _hl),
    Relation("move", ("belly", "chest", "chest", "lwrist"), 1.8 * _hl),
    Relation("angle", ("relbow", "rshoulder", "relbow", "rwrist"), angle_range=(0, 110)),
    Relation("angle", ("lelbow", "lshoulder", "lelbow", "lwrist"), angle_range=(0, 110)),
    Relation("nplane", ("lshoulder", "rshoulder", "lwrist", "rwrist"), 2.5 * _sw),
    Relation("move", ("lwrist", "rwrist", "rwrist", "lwrist"), 1.4 * _hl),
    Relation("move", ("rwrist", "root", "lwrist", "root"), 1.4 * _hl),
    Relation("move", ("lwrist", "root", "rwrist", "root"), 1.4 * _hl),
    Relation("fast", ("rwrist",), 2.5 * _hl),
    Relation("fast", ("lwrist",), 2.5 * _hl),
    Relation("plane", ("root", "lhip", "ltoes", "rankle"), 0.38 * _hl),
    Relation("plane", ("root", "rhip", "rtoes", "lankle"), 0.38 * _hl),
    Relation("nplane", ("zero", "y_unit", "y_min", "rankle"), 1.2 * _hl),
    Relation("nplane", ("zero", "y_unit", "y_min", "lankle"), 1.2 * _hl),
    Relation("nplane", ("lhip", "rhip", "lankle", "rankle"), 2.1 * _hw),
    Relation("angle", ("rknee", "rhip", "rknee", "rankle"), angle_range=(0, 110)),
    Relation("angle", ("lknee", "lhip", "lknee", "lankle"), angle_range=(0, 110)),
    Relation("fast", ("rankle",), 2.5 * _hl),
    Relation("fast", ("lankle",), 2.5 * _hl),
    Relation("angle", ("neck", "root", "rshoulder", "relbow"), angle_range=(25, 180)),
    Relation("angle", ("neck", "root", "lshoulder", "lelbow"), angle_range=(25, 180)),
    Relation("angle", ("neck", "root", "rhip", "rknee"), angle_range=(50, 180)),
    Relation("angle", ("neck", "root", "lhip", "lknee"), angle_range=(50, 180)),
    Relation("plane", ("rankle", "neck", "lankle", "root"), 0.5 * _hl),
    Relation("angle", ("neck", "root", "zero", "y_unit"), angle_range=(70, 110)),
    Relation("nplane", ("zero", "minus_y_unit", "y_min", "rwrist"), -1.2 * _hl),
    Relation("nplane", ("zero", "minus_y_unit", "y_min", "lwrist"), -1.2 * _hl),
    Relation("fast", ("root",), 2.3 * _hl),
)
assert len(MANUAL_RELATIONS) == MANUAL_DIM


def _point(p: np.ndarray, name: str) -> np.ndarray:
    """Positions (T, 3) of a joint or a virtual point over all frames of ``p`` (T, 24, 3)."""
    T = p.shape[0]
    if name == "zero":
        return np.zeros((T, 3))
    if name == "y_unit":
        return np.tile([0.0, 1.0, 0.0], (T, 1))
    if name == "minus_y_unit":
        return np.tile([0.0, -1.0, 0.0], (T, 1))
    if name == "y_min":
        out = np.zeros((T, 3))
        out[:, 1] = p[:, :, 1].min(axis=1)
        return out
    return p[:, _NAMES.index(name)]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ti,ti->t", a, b)


def _relation(p: np.ndarray, rel: Relation) -> np.ndarray:
    """Boolean (T-1,) value of one relation at frames 1..T-1 (strict comparisons, NaN -> False)."""
    pts = [_point(p, n) for n in rel.points]
    cur = [x[1:] for x in pts]  # frame t
    prev = [x[:-1] for x in pts]  # frame t-1
    with np.errstate(invalid="ignore", divide="ignore"):
        if rel.kind == "fast":
            speed = np.linalg.norm(cur[0] - prev[0], axis=1) / MANUAL_TIME_PER_FRAME
            return speed > rel.threshold
        a, b, c, q = cur
        if rel.kind == "plane":
            normal = np.cross(c - a, b - a)
            return _dot(normal, q - a) / np.linalg.norm(normal, axis=1) > rel.threshold
        if rel.kind == "nplane":
            normal = b - a
            return _dot(normal, q - c) / np.linalg.norm(normal, axis=1) > rel.threshold
        if rel.kind == "angle":
            u, v = b - a, q - c
            cos = _dot(u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
            angle = np.degrees(np.arccos(cos))  # no clipping: a rounding overshoot gives NaN -> False
            lo, hi = rel.angle_range
            return (angle > lo) & (angle < hi)
        if rel.kind == "move":
            velocity = (c - a) - (prev[2] - prev[0])  # the third point, relative to a
            direction = b - a
        elif rel.kind == "nmove":
            velocity = (q - a) - (prev[3] - prev[0])  # the fourth point, relative to a
            direction = np.cross(c - a, b - a)
        else:
            raise ValueError(f"unknown relation kind {rel.kind!r}")
        along = _dot(velocity, direction) / np.linalg.norm(direction, axis=1) / MANUAL_TIME_PER_FRAME
        return along > rel.threshold


def manual_features(joints: np.ndarray) -> np.ndarray:
    """32-d geometric feature of one sequence: the share of frames 1..T-1 where each relation holds."""
    p = check_joints(joints)
    flags = np.stack([_relation(p, rel) for rel in MANUAL_RELATIONS], axis=1)  # (T-1, 32) bool
    return (flags.sum(axis=0).astype(np.float32) / np.float32(flags.shape[0])).astype(np.float32)


def extract_motion_features(joints: np.ndarray, *, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kinetic (72,), manual (32,)) of one sequence after zero-start, optionally cut to ``max_frames``."""
    joints = check_joints(joints)
    if max_frames is not None:
        joints = joints[:max_frames]
    joints = zero_start(joints)
    return kinetic_features(joints), manual_features(joints)
