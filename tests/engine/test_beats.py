"""Beat sync: a re-timing that puts motion beats on music beats, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from engine.beats import BeatSyncOptions, motion_beats, sync_to_beats
from engine.errors import InvalidMotionError, InvalidOptionError


def pulsing_walk(frames: int = 900, period: float = 27.0, wobble: float = 3.0) -> np.ndarray:
    """A body gliding along x with a speed that dips every ``period`` (+- ``wobble``) frames: (T, 24, 3)."""
    t = np.arange(frames)
    phase = np.cumsum(1.0 / (period + wobble * np.sin(t / 97.0)))
    speed = 0.01 * (1.05 - np.cos(2 * np.pi * phase))  # minima where the phase is a whole number
    joints = np.zeros((frames, 24, 3))
    joints[:, :, 0] = np.cumsum(speed)[:, None]
    joints[:, :, 1] = 1.0 + 0.05 * np.arange(24)[None, :]
    joints[:, :, 2] = 0.02 * np.sin(np.arange(24))[None, :]
    return joints


def nearest(frames: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(frames)[None, :] - np.asarray(targets)[:, None]).min(axis=1)


def test_motion_beats_are_the_speed_dips() -> None:
    joints = pulsing_walk(wobble=0.0)
    beats = motion_beats(joints)
    assert np.allclose(np.diff(beats), 27, atol=1)
    assert len(beats) == pytest.approx(900 / 27, abs=1.5)


def test_sync_puts_the_paired_motion_beats_on_the_music_beats() -> None:
    joints = pulsing_walk()
    music = np.arange(10, 900, 30)  # 120 bpm at 60 fps, off the dance's 27-frame pulse
    before = nearest(motion_beats(joints), music)
    synced = sync_to_beats(joints, music, fps=60)

    assert synced.joints.shape == joints.shape
    assert len(synced.pairs) >= 12  # most beats within reach are pulled
    after = motion_beats(synced.joints)
    landed = nearest(after, synced.pairs[:, 1])
    assert np.all(landed <= 1), landed
    assert np.mean(nearest(after, music) <= 1) > np.mean(before <= 1) + 0.3


def test_sync_only_retimes_the_dance() -> None:
    joints = pulsing_walk()
    options = BeatSyncOptions(max_rate=1.15)
    synced = sync_to_beats(joints, np.arange(10, 900, 30), fps=60, options=options)
    time = synced.source_time
    assert time[0] == 0.0 and time[-1] == len(joints) - 1  # same start, same end, same length
    assert np.all(np.diff(time) > 0)  # never stops, never runs backwards
    # every output frame is a pose of the input at the reported (fractional) time
    i0 = np.floor(time).astype(int)
    i1 = np.minimum(i0 + 1, len(joints) - 1)
    frac = (time - i0)[:, None, None]
    np.testing.assert_allclose(synced.joints, (1 - frac) * joints[i0] + frac * joints[i1], atol=1e-12)
    # the average rate between pulled beats respects the bound
    knots_out = np.concatenate([[0], synced.pairs[:, 1], [len(joints) - 1]])
    knots_in = np.concatenate([[0], synced.pairs[:, 0], [len(joints) - 1]])
    rate = np.diff(knots_in) / np.diff(knots_out)
    assert np.all(rate <= 1.15 + 1e-9) and np.all(rate >= 1 / 1.15 - 1e-9)
    # pairs are at most max_shift apart and each motion beat / music beat is used once
    assert np.all(np.abs(synced.pairs[:, 1] - synced.pairs[:, 0]) <= 0.3 * 60)
    assert len(np.unique(synced.pairs[:, 0])) == len(synced.pairs) == len(np.unique(synced.pairs[:, 1]))
    summary = synced.summary
    assert summary["pairs"] == len(synced.pairs) and 0 < summary["slowest_rate"] < 1 < summary["fastest_rate"] < 2


def test_a_dance_already_on_the_beat_stays_as_it_is() -> None:
    joints = pulsing_walk(wobble=0.0)
    synced = sync_to_beats(joints, motion_beats(joints), fps=60)
    assert len(synced.pairs) >= 30
    assert np.max(np.abs(synced.source_time - np.arange(len(joints)))) < 1e-9


def test_half_strength_moves_beats_half_way() -> None:
    joints = pulsing_walk(wobble=0.0)
    music = motion_beats(joints) + 6
    synced = sync_to_beats(joints, music, fps=60, options=BeatSyncOptions(strength=0.5))
    inner = synced.pairs[1:-1]
    # the output frame showing each paired motion beat is half-way to its music beat
    shown_at = np.interp(inner[:, 0], synced.source_time, np.arange(len(joints)))
    np.testing.assert_allclose(shown_at, inner[:, 0] + 3, atol=0.01)


@pytest.mark.parametrize("music, options", [
    (np.arange(10, 900, 30), BeatSyncOptions(strength=0.0)),  # off
    (np.zeros(0, dtype=np.int64), BeatSyncOptions()),  # a song without beats
    (None, BeatSyncOptions()),
    (motion_beats(pulsing_walk(wobble=0.0))[::2] + 13, BeatSyncOptions(max_shift_s=0.1)),  # all too far
])
def test_nothing_to_pull_leaves_the_dance_untouched(music, options) -> None:
    joints = pulsing_walk(wobble=0.0)
    synced = sync_to_beats(joints, music, fps=60, options=options)
    assert len(synced.pairs) == 0
    np.testing.assert_array_equal(synced.joints, joints)


@pytest.mark.parametrize("options, message", [
    (BeatSyncOptions(strength=1.5), "strength"),
    (BeatSyncOptions(strength=float("nan")), "strength"),
    (BeatSyncOptions(max_shift_s=0.0), "max_shift_s"),
    (BeatSyncOptions(max_rate=1.0), "max_rate"),
])
def test_bad_options_are_refused(options, message) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        sync_to_beats(pulsing_walk(frames=100), [30, 60], fps=60, options=options)


def test_bad_motion_is_refused() -> None:
    with pytest.raises(InvalidMotionError):
        sync_to_beats(np.zeros((10, 23, 3)), [3], fps=60)
    with pytest.raises(InvalidOptionError, match="fps"):
        sync_to_beats(pulsing_walk(frames=100), [30], fps=0)


def test_time_map_never_runs_backwards():
    from engine.beats import _time_map

    # flat at the knots where it can be (the default bounds) ...
    knots_out = np.array([0.0, 30.0, 58.0, 90.0, 119.0])
    knots_in = np.array([0.0, 27.0, 60.0, 88.0, 119.0])
    time = _time_map(knots_out, knots_in, 120)
    np.testing.assert_allclose(time[[0, 30, 58, 90, 119]], knots_in, atol=1e-9)
    rate = np.diff(time)
    assert np.all(rate > 0) and abs(rate[29] - rate[30]) < 0.01  # no kink at a knot
    # ... and still monotone through knots so uneven (rates 0.6-2.7) that the flat-knot bumps would not be
    knots_out = np.array([0.0, 25.7, 31.5, 40.3, 64.3, 71.2, 104.2, 128.0])
    knots_in = np.array([0.0, 21.8, 26.3, 36.8, 58.5, 76.9, 102.5, 128.0])
    time = _time_map(knots_out, knots_in, 129)
    assert np.all(np.diff(time) > 0)
    np.testing.assert_allclose(np.interp(knots_out, np.arange(129), time), knots_in, atol=0.2)  # knots between frames
