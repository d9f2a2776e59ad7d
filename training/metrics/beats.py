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

# one definition of motion beats for the metric, the rewards and the engine's beat sync
from engine.beats import SMOOTH_SIGMA, mean_joint_speed_per_frame, motion_beats  # noqa: F401

BA_SIGMA = 3.0


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


def shuffled_in_time(features, seed: int, frames_per_row: int = 8):
    """The control for "does the dance follow the music": a song's ``MusicFeatures`` with the 7.5 fps rows
    permuted (seeded) and the 60 fps beats moved with their rows, so everything that reads the music
    (the GPT, beat sync) sees the same shuffled song. Score the resulting dance against the *real* beats.
    """
    import dataclasses

    order = np.random.default_rng(seed).permutation(len(features.features))  # new row j = old row order[j]
    beats = features.beats
    if beats is not None:
        beats = np.asarray(beats, dtype=np.int64)
        row = np.minimum(beats // frames_per_row, len(order) - 1)
        beats = np.sort(frames_per_row * np.argsort(order)[row] + (beats - frames_per_row * row))
    return dataclasses.replace(features, features=features.features[order], beats=beats)

