"""Post-processing of joint sequences: put the feet on the floor, keep planted feet still, change the
frame rate.

``ground_feet`` finds where the floor is under the feet over time and moves the whole body vertically by
a smooth correction, so slow generated drift in height disappears while jumps stay jumps:

1. the sole height per frame is the lowest of the ankles and toes, each minus its height above the sole;
2. contact frames are those where the sole, with its slow drift taken out, is near its lowest point of the
   surrounding fraction of a second (a jump apex is not, a drifting stance is); the floor is the sole height there, interpolated across
   flights and low-passed;
3. wherever the smoothed floor still lies above the soles it is lowered by a smooth bump that provably
   covers the gap, so no frame ends with a foot below the floor.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .errors import InvalidOptionError
from .rotation import make_continuous, quaternion_slerp, rotation_between
from .skeleton import ANKLE_ABOVE_SOLE, ANKLES, LEGS, TOE_ABOVE_SOLE, TOES, check_joints, facing_direction

# Contact: the sole is within CONTACT_TOLERANCE of its lowest point over +-CONTACT_WINDOW_S. A jump apex is far
# above its take-off and landing, slow drift in height moves the sole by much less in that window.
CONTACT_WINDOW_S = 0.2
CONTACT_TOLERANCE = 0.04
# Nobody stays in the air longer than this (seconds): a longer rise of the feet is drift, not a jump.
MAX_FLIGHT_S = 1.0


def _sole_under_joints(joints: np.ndarray) -> np.ndarray:
    """(T, 2, 2) height of the sole under each foot's ankle and toe joint ([left, right] x [ankle, toe])."""
    joints = np.asarray(joints, dtype=np.float64)
    return np.stack([joints[:, ANKLES, 1] - ANKLE_ABOVE_SOLE, joints[:, TOES, 1] - TOE_ABOVE_SOLE], axis=-1)


def sole_height(joints: np.ndarray) -> np.ndarray:
    """Height of the lowest point of the soles per frame (T,) for joints (T, 24, 3) y-up metres."""
    return _sole_under_joints(joints).min(axis=(1, 2))


def _pad_extrapolating(signal: np.ndarray, width: int) -> np.ndarray:
    """Pad both ends by point reflection (2 s[0] - s[k]): continues a slope instead of flattening it."""
    width = min(width, signal.shape[0] - 1)
    return np.pad(signal, width, mode="reflect", reflect_type="odd") if width > 0 else signal.copy()


def _running_min(signal: np.ndarray, half_width: int) -> np.ndarray:
    padded = _pad_extrapolating(signal, half_width)
    pad = (padded.shape[0] - signal.shape[0]) // 2
    padded = np.pad(padded, half_width - pad, mode="edge")  # sequences shorter than the window
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1).min(axis=1)


def _detrend(sole: np.ndarray, half_width: int) -> np.ndarray:
    """Sole height minus its slow floor trend: the running minimum over a flight time, smoothed."""
    trend = _running_min(sole, half_width)
    padded = _pad_extrapolating(trend, 2 * half_width)
    pad = (padded.shape[0] - trend.shape[0]) // 2
    smooth = gaussian_filter1d(padded, sigma=half_width / 2, mode="nearest")
    return sole - smooth[pad : pad + trend.shape[0]]


def contact_frames(sole: np.ndarray, fps: float) -> np.ndarray:
    """Frames (T,) bool where a foot is on the floor, from the sole height per frame (T,).

    Contact: the sole is near its lowest point over +-CONTACT_WINDOW_S. Drift is taken out first (the
    running minimum over a flight time, smoothed), so a body drifting up or down fast is still standing.
    """
    residual = _detrend(sole, max(1, int(round(MAX_FLIGHT_S / 2 * fps))))
    half = max(1, int(round(CONTACT_WINDOW_S * fps)))
    return residual - _running_min(residual, half) < CONTACT_TOLERANCE


def _smooth_cover(gap: np.ndarray, half_width: int) -> np.ndarray:
    """A smooth curve >= gap everywhere: running max over +-h, then a Hann average over +-h."""
    if half_width < 1 or not np.any(gap > 0):
        return gap.copy()
    n = gap.shape[0]
    padded = np.pad(gap, half_width, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1)  # (T, 2h+1)
    running_max = windows.max(axis=1)
    # Averaging running-max values taken within +-h of t keeps every term >= gap[t].
    kernel = np.hanning(2 * half_width + 3)[1:-1]
    kernel /= kernel.sum()
    padded_max = np.pad(running_max, half_width, mode="edge")
    return np.convolve(padded_max, kernel, mode="valid")[:n]


def ground_feet(joints: np.ndarray, fps: float = 60, smoothing_s: float = 0.1) -> np.ndarray:
    """Shift the body vertically so the feet rest on y = 0 when in contact, never below (T, 24, 3) -> same.

    The correction follows the sole height at contact frames, is interpolated across flights (jumps stay
    jumps) and low-passed with a Gaussian of ``smoothing_s`` seconds, so drift in height disappears without
    jerks. Only the y coordinate changes.
    """
    joints = check_joints(joints)
    for name, value in (("fps", fps), ("smoothing_s", smoothing_s)):
        if not (np.isfinite(value) and value > 0):
            raise InvalidOptionError(f"{name} must be a positive number, got {value}")
    sole = sole_height(joints)  # (T,)
    n = sole.shape[0]
    contact = contact_frames(sole, fps)  # never empty: the lowest frame is always a contact
    frames = np.arange(n)
    floor = np.interp(frames, frames[contact], sole[contact])  # (T,) floor height seen by the feet
    floor = gaussian_filter1d(floor, sigma=smoothing_s * fps, mode="nearest")
    # Smoothing can lift the floor above a sole: lower it there by a smooth bump that covers the gap.
    floor -= _smooth_cover(np.maximum(floor - sole, 0.0), int(round(2 * smoothing_s * fps)))
    floor = np.minimum(floor, sole) - 1e-9  # a nanometre of margin against float round-off
    out = joints.copy()
    out[:, :, 1] -= floor[:, None]
    return out


# A foot joint this close to the floor (metres, after ground_feet) is planted; between half of it and it,
# the lock fades out, so lifting a foot never jerks the body.
FOOT_LOCK_HEIGHT = 0.05
FOOT_LOCK_SMOOTHING = 3.0  # frames (Gaussian sigma) of the correction


def _foot_contacts(joints: np.ndarray, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each foot touches the floor where it is lowest: its sole height (T, 2) and its contact point
    (T, 2, 3) (the ankle, the toe or, flat on the floor, between them, weighted by how close each is to
    the floor within ``height``); [left, right]."""
    ankles, toes = joints[:, ANKLES], joints[:, TOES]  # (T, 2, 3): left, right
    above = _sole_under_joints(joints)  # (T, 2, 2)
    sole = np.maximum(above.min(axis=-1), 0.0)  # (T, 2) sole height of each foot
    closeness = np.clip(1.0 - (above - sole[..., None]) / height, 0.0, 1.0)  # (T, 2, 2)
    point = (closeness[..., :1] * ankles + closeness[..., 1:] * toes) / closeness.sum(-1, keepdims=True)
    return sole, point


def lock_feet(joints: np.ndarray, height: float = FOOT_LOCK_HEIGHT) -> np.ndarray:
    """Move the whole body horizontally so that a planted foot does not slide (T, 24, 3) -> same.

    Generated motion comes from a root velocity and a pose decoded separately, so a foot on the floor
    often slides ("foot skating"). For every frame-to-frame step the foot whose sole is lowest, within
    ``height`` of the floor (y = 0: call after ``ground_feet``), is the planted one; the horizontal slide
    of its contact point (the ankle, the toe, or between them when flat) is taken off the body from the
    next frame on. Poses and heights are unchanged, and the body
    still travels by moving over its planted foot, as a walking body does. Steps with no foot down
    (jumps, lifts) are left alone.
    """
    joints = check_joints(joints)
    if not (np.isfinite(height) and height > 0):
        raise InvalidOptionError(f"the foot lock height must be a positive number, got {height}")
    sole, point = _foot_contacts(joints, height)
    low = np.maximum(sole[:-1], sole[1:])  # (T-1, 2) the higher of the two ends of each step
    planted = np.argmin(low, axis=1)  # (T-1,) the lower foot of each step
    steps = np.arange(len(planted))
    lowest = low[steps, planted]
    weight = np.clip(2.0 - 2.0 * lowest / height, 0.0, 1.0)  # 1 up to height / 2, 0 from height on
    slide = point[1:, :, [0, 2]][steps, planted] - point[:-1, :, [0, 2]][steps, planted]  # (T-1, 2)
    # low-passed: the decoded foot trembles frame to frame, and the body must not take that over
    correction = gaussian_filter1d(weight[:, None] * slide, sigma=FOOT_LOCK_SMOOTHING, axis=0, mode="nearest")
    offset = np.zeros((len(joints), 2))
    offset[1:] = -np.cumsum(correction, axis=0)
    out = joints.copy()
    out[:, :, [0, 2]] += offset[:, None, :]
    return out


# Foot planting (plant_feet). A foot is planted where its sole is within FOOT_LOCK_HEIGHT of the floor and
# its contact point moves slower than PLANT_SPEED (m/s, smoothed over PLANT_SMOOTHING frames) for at
# least PLANT_MIN_S; a foot that travels between two plants is lifted into a step STEP_LIFT_PER_M of the
# distance it travels high, at most STEP_LIFT_MAX_M (a 10 cm step leaves the 5 cm band in which the usual
# skating measure counts a foot as in contact).
PLANT_SPEED = 0.5
PLANT_SMOOTHING = 2.0
PLANT_MIN_S = 0.05  # 3 frames at 60 fps
STEP_LIFT_PER_M = 0.5
STEP_LIFT_MAX_M = 0.10
STEP_EASE = 0.15  # of a step's time: the foot lifts before it goes over, and lands after
PLANT_FADE_S = 0.15  # before the first plant and after the last, the pin fades over this time
# A leg is never stretched straighter than this share of its length: a fully straight knee flips.
MAX_REACH = 0.995
KNEE_FORWARD_M = 0.02  # how far a knee's bending side is nudged forward


def move_limb_ends(joints: np.ndarray, limbs: tuple[tuple[int, int, int], ...], carried: np.ndarray,
                   shift: np.ndarray, bend_hint: np.ndarray) -> np.ndarray:
    """Move the end joint of each two-bone limb (root, middle, end) by ``shift`` (T, n_limbs, 3), the root
    fixed and both bones' lengths kept (two-bone IK), ``carried[i]`` (the toe, the hand) moved with limb
    i's end. The middle joint (knee, elbow) bends on the side it bent to, turned with the limb (the
    shortest turn from the old root-end line onto the new one), nudged by ``bend_hint`` (T, 3) (metres:
    which side a straight limb bends to). An end out of reach stops where the limb is (almost) straight.
    Frames where a limb's shift is zero are left exactly as they were."""
    out = joints.copy()
    for limb, (root_i, mid_i, end_i) in enumerate(limbs):
        moving = np.abs(shift[:, limb]).sum(axis=1) > 0
        if not moving.any():
            continue
        root, mid, end = (joints[moving, i] for i in (root_i, mid_i, end_i))
        upper = np.linalg.norm(mid - root, axis=1)
        lower = np.linalg.norm(end - mid, axis=1)
        reach = end + shift[moving, limb] - root
        dist = np.linalg.norm(reach, axis=1)
        clamped = np.clip(dist, np.abs(upper - lower) + 1e-6, MAX_REACH * (upper + lower))
        along = reach / np.maximum(dist, 1e-9)[:, None]
        target = root + along * clamped[:, None]
        # the middle joint lies on the circle of points a bone from each end
        a = (upper**2 - lower**2 + clamped**2) / (2 * clamped)
        h = np.sqrt(np.maximum(upper**2 - a**2, 0.0))
        before = (end - root) / np.maximum(np.linalg.norm(end - root, axis=1, keepdims=True), 1e-12)
        bend = mid - root + bend_hint[moving]
        bend -= np.sum(bend * before, axis=1, keepdims=True) * before
        bend = np.einsum("nij,nj->ni", rotation_between(before, along), bend)
        bend -= np.sum(bend * along, axis=1, keepdims=True) * along  # (round-off)
        bend /= np.maximum(np.linalg.norm(bend, axis=1, keepdims=True), 1e-12)
        out[moving, mid_i] = root + along * a[:, None] + bend * h[:, None]
        out[moving, end_i] = target
        out[moving, carried[limb]] = joints[moving, carried[limb]] + (target - end)
    return out


def true_runs(mask: np.ndarray, min_length: int = 1) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D bool array at least ``min_length`` long."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    runs = zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist())
    return [(a, b) for a, b in runs if b - a >= min_length]


def smoothstep(s: np.ndarray) -> np.ndarray:
    """3 s^2 - 2 s^3: from 0 to 1 over s in [0, 1] with no speed at either end (easing in and out)."""
    return s * s * (3.0 - 2.0 * s)


def _foot_shift(point: np.ndarray, sole: np.ndarray, fps: float, height: float) -> np.ndarray:
    """(T, 3) how far to move one foot: to its spot while planted, from spot to spot while it travels
    (lifted into a step where it would slide along the floor), fading out before the first and after
    the last plant. ``point`` (T, 3) the foot's contact point, ``sole`` (T,) its sole height."""
    n = len(point)
    flat = point[:, [0, 2]]
    speed = np.zeros(n)
    speed[1:] = np.linalg.norm(np.diff(flat, axis=0), axis=1) * fps
    speed = gaussian_filter1d(speed, PLANT_SMOOTHING, mode="nearest")
    plants = true_runs((sole < height) & (speed < PLANT_SPEED), max(1, int(round(PLANT_MIN_S * fps))))
    shift = np.zeros((n, 3))
    if not plants:
        return shift
    spots = [flat[a:b].mean(axis=0) for a, b in plants]
    for (a, b), spot in zip(plants, spots):
        shift[a:b, [0, 2]] = spot - flat[a:b]
    for (_, b0), (a1, _), spot0, spot1 in zip(plants, plants[1:], spots, spots[1:]):
        # travelling from spot0 to spot1, as a step: the foot lifts first, goes over (its own path's bends
        # kept: how it strays from the straight line between its ends), and comes down last
        frames = np.arange(b0, a1)
        u = (frames - (b0 - 1)) / (a1 - (b0 - 1))  # (0, 1) across the travel
        chord = flat[b0 - 1] + u[:, None] * (flat[a1] - flat[b0 - 1])
        over = smoothstep(np.clip((u - STEP_EASE) / (1 - 2 * STEP_EASE), 0.0, 1.0))[:, None]
        shift[frames[:, None], [0, 2]] = spot0 + over * (spot1 - spot0) + (flat[frames] - chord) - flat[frames]
        lift = min(STEP_LIFT_PER_M * float(np.linalg.norm(spot1 - spot0)), STEP_LIFT_MAX_M)
        lift *= smoothstep(np.clip(np.minimum(u, 1 - u) / (2 * STEP_EASE), 0.0, 1.0))
        shift[frames, 1] = np.maximum(lift - sole[frames], 0.0)  # only what the foot is not already lifted
    fade = max(1, int(round(PLANT_FADE_S * fps)))
    first, last = plants[0][0], plants[-1][1] - 1
    before = np.arange(max(0, first - fade), first)
    shift[before[:, None], [0, 2]] = smoothstep((before - (first - fade)) / fade)[:, None] * (spots[0] - flat[first])
    after = np.arange(last + 1, min(n, last + 1 + fade))
    shift[after[:, None], [0, 2]] = smoothstep(1 - (after - last) / fade)[:, None] * (spots[-1] - flat[last])
    return shift


def plant_feet(joints: np.ndarray, fps: float = 60, height: float = FOOT_LOCK_HEIGHT) -> np.ndarray:
    """Feet that stay on their spot while on the floor and step (not slide) between spots (T, 24, 3) -> same.

    ``lock_feet`` moves the body over the lower foot; the other foot, and a foot the decoder moves
    under a still body, can still slide, and decoded steps barely leave the floor. Here each foot is
    planted where its sole is within ``height`` of the floor (y = 0: call after ``ground_feet``) and its
    contact point (the ankle, the toe or between them, as ``lock_feet`` finds it) is slow: it is pinned
    to its mean spot over the plant. Between two plants the foot goes from one spot to the next along
    its own path, lifted into a step where it would skim the floor. The ankle is moved by two-bone IK on
    hip-knee-ankle (bone lengths kept, the knee bending in its own plane, the toe following); the
    pelvis and the upper body are unchanged, and a spot out of the leg's reach is approached as far as
    the straight leg allows.
    """
    joints = check_joints(joints)
    for name, value in (("fps", fps), ("height", height)):
        if not (np.isfinite(value) and value > 0):
            raise InvalidOptionError(f"the foot planting {name} must be a positive number, got {value}")
    sole, point = _foot_contacts(joints, height)
    shift = np.stack([_foot_shift(point[:, side], sole[:, side], fps, height) for side in range(2)], axis=1)
    # knees bend forward (where the body faces): the nudge decides for a leg that was straight
    return move_limb_ends(joints, LEGS, TOES, shift, KNEE_FORWARD_M * facing_direction(joints))


# --- frame rate --------------------------------------------------------------------------------------------
def _sample_positions(
    num_frames: int, src_fps: float, dst_fps: float, within_span: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and blend weights of the frames of the resampled sequence.

    By default the duration is kept (round(T * dst / src) frames, the last ones holding the final
    pose); ``within_span`` keeps only output frames inside the source's time span (frame k at
    k / dst_fps <= (T - 1) / src_fps), so an integer ratio is an exact decimation.
    """
    for name, value in (("src_fps", src_fps), ("dst_fps", dst_fps)):
        if not (np.isfinite(value) and value > 0):
            raise InvalidOptionError(f"{name} must be a positive frame rate, got {value}")
    if num_frames < 1:
        raise InvalidOptionError("cannot resample an empty sequence")
    if within_span:
        count = int(np.floor((num_frames - 1) * dst_fps / src_fps + 1e-9)) + 1
    else:
        count = max(1, int(round(num_frames * dst_fps / src_fps)))
    t = np.arange(count) * (src_fps / dst_fps)  # (N,) positions in source frames
    i0 = np.clip(np.floor(t).astype(np.int64), 0, num_frames - 1)
    i1 = np.minimum(i0 + 1, num_frames - 1)
    frac = np.clip(t - i0, 0.0, 1.0)
    frac = np.where(i1 == i0, 0.0, frac)  # past the last frame: hold it
    return i0, i1, frac


def sample_frames(joints: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(T, ...) arrays at fractional frame positions ``frames`` (n,), linearly between the two frames
    around each, held at the first and last frame outside the span -> (n, ...). A time map's motion
    (beat sync, the training data's re-timed copies)."""
    joints = np.asarray(joints)
    last = joints.shape[0] - 1
    frames = np.clip(np.asarray(frames, dtype=np.float64), 0.0, float(last))
    i0 = np.minimum(np.floor(frames).astype(np.int64), last)
    i1 = np.minimum(i0 + 1, last)
    frac = (frames - i0).reshape((-1,) + (1,) * (joints.ndim - 1))
    return (1.0 - frac) * joints[i0] + frac * joints[i1]


def resample_joints(joints: np.ndarray, src_fps: float, dst_fps: float, *, within_span: bool = False) -> np.ndarray:
    """Linear resampling along time of (T, ...) arrays; keeps the duration: round(T * dst / src) frames
    (or, with ``within_span``, only the frames inside the source's time span)."""
    joints = np.asarray(joints, dtype=np.float64)
    i0, i1, frac = _sample_positions(joints.shape[0], src_fps, dst_fps, within_span)
    frac = frac.reshape((-1,) + (1,) * (joints.ndim - 1))
    return (1.0 - frac) * joints[i0] + frac * joints[i1]


def resample_rotations(quats: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Slerp resampling of quaternions (T, ..., 4) w-first; same frame count rule as ``resample_joints``."""
    quats = make_continuous(np.asarray(quats, dtype=np.float64), axis=0)
    i0, i1, frac = _sample_positions(quats.shape[0], src_fps, dst_fps)
    frac = np.broadcast_to(frac.reshape((-1,) + (1,) * (quats.ndim - 2)), (len(frac),) + quats.shape[1:-1])
    return make_continuous(quaternion_slerp(quats[i0], quats[i1], frac), axis=0)
