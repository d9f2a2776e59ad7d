"""Motion beats and the beat-align score (BAS) of Bailando's ``beat_align_score.py``.

Motion beats: the frames where the mean joint speed, Gaussian-smoothed with sigma = 5 frames, has a
strict local minimum (as ``scipy.signal.argrelextrema(np.less)``, order 1). The speed at index t is the mean over the
24 joints of |p[t+1] - p[t]|, so a T-frame sequence gives T-1 speeds, and beats are indices into them.

BAS = mean over music beats b of exp(-min_m (m - b)^2 / (2 * 9)): each music beat is matched to its
nearest motion beat with a Gaussian tolerance of sigma = 3 frames at 60 fps (recall-like: it loops over
music beats). Music beats at or after the motion length (T-1) are dropped first, as the official code
truncates the beat column to the motion length.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

SMOOTH_SIGMA = 5.0
BA_SIGMA = 3.0


def mean_joint_speed_per_frame(joints: np.ndarray) -> np.ndarray:
    """(T-1,) mean over joints of the per-frame displacement length |p[t+1] - p[t]| (metres/frame)."""
    joints = np.asarray(joints, dtype=np.float64)
    return np.linalg.norm(joints[1:] - joints[:-1], axis=-1).mean(axis=1)


def motion_beats(joints: np.ndarray) -> np.ndarray:
    """Frame indices (int64) of motion beats: local minima of the smoothed mean joint speed."""
    speed = gaussian_filter1d(mean_joint_speed_per_frame(joints), SMOOTH_SIGMA)
    # strict minima against both neighbours; the end points never count (argrelextrema's "clip" mode)
    inner = (speed[1:-1] < speed[:-2]) & (speed[1:-1] < speed[2:])
    return (np.nonzero(inner)[0] + 1).astype(np.int64)


def _music_beats_within(music_beats: np.ndarray, length: int) -> np.ndarray:
    """The music beat frames (int64) inside a motion of ``length`` speed samples (T - 1)."""
    beats = np.asarray(music_beats, dtype=np.int64).reshape(-1)
    return beats[(beats >= 0) & (beats < length)]


def beat_align_score(music_beats: np.ndarray, joints: np.ndarray) -> float | None:
    """BAS of one dance (T, 24, 3) at 60 fps against music beat frames (at 60 fps).

    Returns None when no music beat falls inside the motion, and 0.0 when the motion has no beat at all
    (the official code would fail there; a dance with no beats aligns with nothing).
    """
    dance = motion_beats(joints)
    beats = _music_beats_within(music_beats, len(joints) - 1)
    if beats.size == 0:
        return None
    if dance.size == 0:
        return 0.0
    nearest_sq = ((dance[None, :] - beats[:, None]) ** 2).min(axis=1)  # (K,)
    return float(np.exp(-nearest_sq / (2.0 * BA_SIGMA**2)).mean())


def beat_timing(music_beats: np.ndarray, joints: np.ndarray, tolerance: int = int(BA_SIGMA)) -> dict[str, float] | None:
    """What the beat-align score mixes up, taken apart (ours, not in the paper).

    BAS is a recall of music beats, so it rises with the *number* of motion beats as well as with their
    *timing*: a dancer that slows down and scatters speed minima scores higher whatever the music. Here:

    * ``motion_beats_per_music_beat``: how many motion beats the dance has per music beat (rate);
    * ``on_beat_fraction``: share of the motion beats within ``tolerance`` frames of a music beat (timing);
    * ``chance_on_beat_fraction``: the share a dance whose beats fall at random frames would get (the
      share of frames within ``tolerance`` of a music beat). Timing follows the music only where
      ``on_beat_fraction`` is clearly above it.

    None when no music beat falls inside the motion or the motion has no beat.
    """
    dance = motion_beats(joints)
    length = len(joints) - 1
    beats = _music_beats_within(music_beats, length)
    if beats.size == 0 or dance.size == 0:
        return None
    near = np.zeros(length, dtype=bool)
    for b in beats:
        near[max(0, b - tolerance) : b + tolerance + 1] = True
    return {
        "motion_beats_per_music_beat": float(dance.size / beats.size),
        "on_beat_fraction": float(near[dance].mean()),
        "chance_on_beat_fraction": float(near.mean()),
    }
