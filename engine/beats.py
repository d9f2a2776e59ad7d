"""Motion beats, and beat sync: re-time a dance so its motion beats land on the song's beats.

Motion beats (the paper's definition, shared with ``training.metrics.beats``): the frames where the mean
joint speed, Gaussian-smoothed with sigma = 5 frames, has a strict local minimum. The speed at index t is
the mean over the 24 joints of |p[t+1] - p[t]|, so a T-frame sequence gives T-1 speeds and beats index
into them.

Beat sync (``sync_to_beats``) is a time warp, not a change of poses: the dance keeps every pose and its
path and is only played a little faster or slower between beats. Why it exists: the model's 8-frame
codes do not keep where inside a code a move stops (measured in ``assets/MODEL_CARD.md``), so generated
motion beats come at the music's *rate* but not on its *phase*. The warp

1. pairs motion beats with music beats at most ``max_shift_s`` apart;
2. keeps the largest set of pairs that can be reached with the playback rate between consecutive pairs
   within [1 / max_rate, max_rate] (dynamic programming; smaller shifts break ties);
3. maps output time to dance time through those pairs and the two end frames with a smooth rate that is
   flat at every pair, so the warp does not slide the speed minima it has just placed (``_time_map``);
   the length is unchanged;
4. resamples the joints along it (linear between frames).

``strength`` in [0, 1] moves each kept motion beat that fraction of the way to its music beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import gaussian_filter1d

from .errors import InvalidOptionError
from .postprocess import sample_frames
from .skeleton import check_joints

SMOOTH_SIGMA = 5.0  # frames at 60 fps, as the official beat-align score


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


@dataclass(frozen=True)
class BeatSyncOptions:
    """How hard beat sync may pull.

    strength:    0 leaves the dance as generated, 1 puts each kept motion beat exactly on its music beat.
    max_shift_s: the farthest a motion beat is moved (seconds); farther pairs are not made. Between
                 pulled beats the shift changes only as fast as ``max_rate`` allows, so a large shift
                 builds up only where the dance's pulse is steadily slower or faster than the song's.
    max_rate:    bound on the average playback rate between two pulled beats: at most this much faster,
                 or this much slower, than generated. The rate is flat at the beats and swings more in
                 between (``BeatSync.summary`` reports its extremes; about 0.7-1.3 at the default).

    The defaults were chosen on six dances of the default model to the held-out song: a larger rate
    bound pulls a few more beats for visibly uneven tempo, a shift above 0.3 s pulls no more.
    """

    strength: float = 1.0
    max_shift_s: float = 0.3
    max_rate: float = 1.15

    def check(self) -> None:
        if not (np.isfinite(self.strength) and 0.0 <= self.strength <= 1.0):
            raise InvalidOptionError(f"beat sync strength must be between 0 and 1, got {self.strength}")
        if not (np.isfinite(self.max_shift_s) and self.max_shift_s > 0):
            raise InvalidOptionError(f"beat sync max_shift_s must be a positive number of seconds, got {self.max_shift_s}")
        if not (np.isfinite(self.max_rate) and self.max_rate > 1.0):
            raise InvalidOptionError(f"beat sync max_rate must be above 1, got {self.max_rate}")


@dataclass
class BeatSync:
    """A warped dance and what the warp did.

    joints:        (T, 24, 3) the re-timed joints (same length as the input).
    source_time:   (T,) the input's (fractional) frame shown at each output frame.
    pairs:         (K, 2) int64 (motion beat, music beat) frame pairs that were pulled together.
    motion_beats:  number of motion beats of the input.
    music_beats:   number of music beats inside the dance.
    """

    joints: np.ndarray
    source_time: np.ndarray
    pairs: np.ndarray
    motion_beats: int
    music_beats: int

    @property
    def summary(self) -> dict[str, float | int]:
        shifts = np.abs(self.pairs[:, 1] - self.pairs[:, 0]) if len(self.pairs) else np.zeros(0)
        rate = np.diff(self.source_time)
        return {
            "pairs": int(len(self.pairs)),
            "motion_beats": int(self.motion_beats),
            "music_beats": int(self.music_beats),
            "mean_shift_frames": float(shifts.mean()) if shifts.size else 0.0,
            "slowest_rate": float(rate.min()) if rate.size else 1.0,  # playback rates reached, not the bound
            "fastest_rate": float(rate.max()) if rate.size else 1.0,
        }


def _chain(source: np.ndarray, target: np.ndarray, shift_cost: np.ndarray, last: int,
           max_rate: float) -> np.ndarray:
    """Indices of the largest monotone chain of anchors (source[i] -> target[i]), cheapest shifts first.

    Anchors are sorted by target; every step of the chain, including from the start (0 -> 0) and to the end
    (last -> last), must keep the rate d target / d source within [1 / max_rate, max_rate].
    """
    n = len(source)
    lo, hi = 1.0 / max_rate, max_rate

    def rate_ok(d_src: np.ndarray, d_tgt: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = d_tgt / d_src
        return (d_src > 0) & (d_tgt > 0) & (ratio >= lo) & (ratio <= hi)

    score = np.full(n, -np.inf)  # best (anchors - shift cost) of a chain from the start ending at i
    back = np.full(n, -1, dtype=np.int64)
    from_start = rate_ok(source.astype(np.float64), target.astype(np.float64))
    score[from_start] = 1.0 - shift_cost[from_start]
    for i in range(1, n):
        prev = np.arange(i)
        ok = np.isfinite(score[prev]) & rate_ok((source[i] - source[prev]).astype(np.float64),
                                                 (target[i] - target[prev]).astype(np.float64))
        if np.any(ok):
            j = prev[ok][np.argmax(score[prev][ok])]
            candidate = score[j] + 1.0 - shift_cost[i]
            if candidate > score[i]:
                score[i], back[i] = candidate, j
    to_end = np.isfinite(score) & rate_ok((last - source).astype(np.float64), (last - target).astype(np.float64))
    if not np.any(to_end):
        return np.zeros(0, dtype=np.int64)
    i = int(np.flatnonzero(to_end)[np.argmax(score[to_end])])
    chain = []
    while i >= 0:
        chain.append(i)
        i = int(back[i])
    return np.asarray(chain[::-1], dtype=np.int64)


def _knot_rates(mean_rate: np.ndarray, pull: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Rates at the knots (start and end knot of each segment) whose mean over each segment is as close to
    that segment's average rate as possible (least squares), pulled a little towards the mean of the two
    neighbouring segments so the solution does not oscillate: the less the knot rates miss a segment's
    average, the smaller the bump that must make up for it, and the steadier the tempo."""
    s = len(mean_rate)
    neighbours = np.concatenate([mean_rate[:1], (mean_rate[:-1] + mean_rate[1:]) / 2, mean_rate[-1:]])
    a = np.zeros((2 * s + 1, s + 1))
    a[np.arange(s), np.arange(s)] = 0.5
    a[np.arange(s), np.arange(s) + 1] = 0.5
    a[s + np.arange(s + 1), np.arange(s + 1)] = pull
    b = np.concatenate([mean_rate, pull * neighbours])
    rates = np.linalg.lstsq(a, b, rcond=None)[0]
    rates = np.clip(rates, mean_rate.min() * 0.9, mean_rate.max() * 1.1)  # never near a standstill
    return rates[:-1], rates[1:]


def _time_map(knots_out: np.ndarray, knots_in: np.ndarray, n: int) -> np.ndarray:
    """Source time (n,) of output frames 0..n-1 through increasing knots, with a rate that is stationary at
    every knot.

    A motion beat is a speed minimum, and the warped speed is the source speed times the rate: where the rate
    has a slope the minimum slides. So each knot gets a rate (``_knot_rates``) with zero slope there, and
    inside a segment the rate moves between the knot rates along a smootherstep, plus a sin^4 bump sized so
    the segment covers exactly its source span.
    """
    d_out, d_in = np.diff(knots_out), np.diff(knots_in)
    mean_rate = d_in / d_out  # (S,) average rate of each segment
    r_a, r_b = _knot_rates(mean_rate)
    bump = (8.0 / 3.0) * (mean_rate - (r_a + r_b) / 2)  # amplitude of the sin^4 bump (mean 3/8) that fixes the span
    frames = np.arange(n, dtype=np.float64)
    seg = np.clip(np.searchsorted(knots_out, frames, side="right") - 1, 0, len(d_out) - 1)
    u = (frames - knots_out[seg]) / d_out[seg]
    # integrals over [0, u] of the smootherstep 6t^5 - 15t^4 + 10t^3 and of sin^4(pi t)
    step = u**6 - 3 * u**5 + 2.5 * u**4
    hump = 3 * u / 8 - np.sin(2 * np.pi * u) / (4 * np.pi) + np.sin(4 * np.pi * u) / (32 * np.pi)
    covered = r_a[seg] * u + (r_b[seg] - r_a[seg]) * step + bump[seg] * hump
    source_time = knots_in[seg] + d_out[seg] * covered
    if np.any(np.diff(source_time) <= 0):
        # Very uneven rates (a bound far above the default) can need a bump that runs time backwards;
        # a monotone cubic through the knots never does, at the price of rates that slope at the knots.
        source_time = PchipInterpolator(knots_out, knots_in)(frames)
    return source_time


def sync_to_beats(joints: np.ndarray, music_beats: np.ndarray, fps: float = 60.0,
                  options: BeatSyncOptions | None = None) -> BeatSync:
    """Re-time a dance (T, 24, 3) so its motion beats land on ``music_beats`` (frame indices at ``fps``).

    Returns the dance unchanged (identity time map, no pairs) when there is nothing to pair.
    """
    options = options or BeatSyncOptions()
    options.check()
    joints = check_joints(joints)
    if not (np.isfinite(fps) and fps > 0):
        raise InvalidOptionError(f"fps must be a positive frame rate, got {fps}")
    n = joints.shape[0]
    last = n - 1
    identity = np.arange(n, dtype=np.float64)
    dance = motion_beats(joints) if n > 2 else np.zeros(0, dtype=np.int64)
    music = np.unique(np.asarray(music_beats if music_beats is not None else [], dtype=np.int64).reshape(-1))
    music = music[(music > 0) & (music < last)]

    def unchanged() -> BeatSync:
        return BeatSync(joints.copy(), identity, np.zeros((0, 2), dtype=np.int64), int(dance.size), int(music.size))

    if options.strength == 0.0 or dance.size == 0 or music.size == 0:
        return unchanged()

    max_shift = options.max_shift_s * fps
    src, tgt = np.meshgrid(dance, music, indexing="xy")  # (K music, M dance)
    close = np.abs(src - tgt) <= max_shift
    source, beat = src[close], tgt[close]  # candidate pairs, sorted by music beat, then motion beat
    target = source + options.strength * (beat - source)  # where each motion beat is put
    # the rate bound forbids equal sources (or targets) in a chain: each motion beat is used once
    chain = _chain(source, target, 0.5 * np.abs(beat - source) / max_shift, last, options.max_rate)
    if chain.size == 0:
        return unchanged()

    knots_out = np.concatenate([[0.0], target[chain].astype(np.float64), [float(last)]])
    knots_in = np.concatenate([[0.0], source[chain].astype(np.float64), [float(last)]])
    source_time = np.clip(_time_map(knots_out, knots_in, n), 0.0, float(last))
    warped = sample_frames(joints, source_time)
    pairs = np.stack([source[chain], beat[chain]], axis=1).astype(np.int64)
    return BeatSync(warped, source_time, pairs, int(dance.size), int(music.size))
