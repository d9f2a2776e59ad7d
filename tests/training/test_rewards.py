"""Actor-critic rewards on constructed motions: beats on the music beats earn more, in both forms."""

from __future__ import annotations

import numpy as np
import pytest

from engine.skeleton import LOWER_JOINTS, REST_JOINTS
from training.metrics.beats import motion_beats
from training.stages.rewards import (
    beat_align_reward,
    half_body_reward,
    speed_reward,
    token_flags,
    token_rewards,
)

PERIOD = 32  # frames between beats (112.5 bpm at 60 fps), 4 tokens
T = 28 * 8  # the 224 frames of one actor-critic window


def pulsing_walk(phase: float, frames: int = T, period: int = PERIOD) -> np.ndarray:
    """The rest skeleton travelling forward with speed A(1 - cos(2 pi (t - phase) / P)): it stops at
    t = phase + kP, so its motion beats (speed minima) sit there (a fractional phase keeps the two
    frames around a stop from being exactly equal, which would be no strict minimum)."""
    t = np.arange(frames, dtype=np.float64)
    x = 0.02 * ((t - phase) - period / (2 * np.pi) * np.sin(2 * np.pi * (t - phase) / period))
    joints = np.repeat(REST_JOINTS[None].astype(np.float64), frames, axis=0)
    joints[:, :, 2] += x[:, None]
    return joints


MUSIC_BEATS = np.arange(4, T, PERIOD)  # frame 4 of every 4th token: away from token edges


def test_constructed_motion_beats_sit_where_intended():
    beats = motion_beats(pulsing_walk(phase=4.3))
    assert len(beats) >= 5 and np.all(np.abs(beats[:, None] - MUSIC_BEATS[None]).min(1) <= 1)


@pytest.mark.parametrize("form", ["released", "paper", "balanced"])
def test_motion_on_the_music_beats_earns_more_than_a_shifted_one(form):
    on_beat = beat_align_reward(pulsing_walk(phase=4.3), MUSIC_BEATS, form)
    off_beat = beat_align_reward(pulsing_walk(phase=4.3 + PERIOD / 2), MUSIC_BEATS, form)
    assert on_beat.shape == (28,) and set(np.unique(on_beat)) <= {-5.0, -2.5, 0.0, 5.0}
    assert on_beat.sum() > off_beat.sum()
    music_tokens = token_flags(MUSIC_BEATS, 28).astype(bool)
    # on the tokens with a music beat: +5 where the motion stops there (all but maybe the first, whose
    # minimum is at the clip's edge), -5 for the shifted motion
    assert (on_beat[music_tokens] == 5).mean() >= 0.8 and np.all(off_beat[music_tokens] == -5)


def test_the_two_forms_differ_where_there_is_no_music_beat():
    joints = pulsing_walk(phase=4.3)
    released = beat_align_reward(joints, MUSIC_BEATS, "released")
    paper = beat_align_reward(joints, MUSIC_BEATS, "paper")
    quiet = ~token_flags(MUSIC_BEATS, 28).astype(bool)
    assert np.all(released[quiet] == -5)  # released: "no music beat" is punished as well
    assert np.all(paper[quiet] == 5)  # paper: only a music beat without a motion beat is punished
    np.testing.assert_array_equal(released[~quiet], paper[~quiet])
    with pytest.raises(ValueError, match="reward form"):
        beat_align_reward(joints, MUSIC_BEATS, "other")


def test_balanced_form_scores_hits_misses_and_beats_off_the_music(monkeypatch):
    """+5 a hit, -5 a miss, -5 x penalty a motion beat off the music, 0 a quiet token."""
    music = np.array([4, 36])  # tokens 0 and 4
    dance_frames = np.array([5, 19, 27])  # tokens 0 (hit), 2 and 3 (off the music); token 4 is a miss
    joints = pulsing_walk(phase=4.3, frames=48)
    flags = {"music": token_flags(music, 6), "dance": token_flags(dance_frames, 6)}
    np.testing.assert_array_equal(flags["dance"], [1, 0, 1, 1, 0, 0])
    # the reward from the flags, with the motion beats replaced by the ones above
    monkeypatch.setattr("training.stages.rewards.motion_beats", lambda _joints: dance_frames)
    r = beat_align_reward(joints, music, "balanced", false_beat_penalty=0.4)
    np.testing.assert_allclose(r, [5.0, 0.0, -2.0, -2.0, -5.0, 0.0])


def test_only_the_balanced_form_prefers_the_beat_to_double_time():
    """Motion beats on every music beat vs on every music beat *and* half-way between: the paper form pays
    the double-time dance at least as much (it pays any motion beat), the balanced form pays it less."""
    on_beat = pulsing_walk(phase=4.3)
    double_time = pulsing_walk(phase=4.3, period=PERIOD // 2)
    assert len(motion_beats(double_time)) >= 1.7 * len(motion_beats(on_beat))
    paper = [beat_align_reward(j, MUSIC_BEATS, "paper").sum() for j in (on_beat, double_time)]
    balanced = [beat_align_reward(j, MUSIC_BEATS, "balanced").sum() for j in (on_beat, double_time)]
    assert paper[1] >= paper[0]
    assert balanced[0] > balanced[1] + 10  # several half-way beats at -2.5 each


def test_half_body_consistency_punishes_a_twisted_body():
    aligned = pulsing_walk(phase=4.3)
    twisted = aligned.copy()
    angle = np.deg2rad(150)  # lower body turned 150 degrees about the vertical through the pelvis
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    pelvis = twisted[:, :1]
    lower = list(LOWER_JOINTS)
    twisted[:, lower] = (twisted[:, lower] - pelvis) @ rot.T + pelvis
    good, bad = half_body_reward(aligned), half_body_reward(twisted)
    assert np.all(good == 1.0)
    assert np.all(bad < -0.5)
    total = token_rewards(twisted, MUSIC_BEATS, "released", half_body_rate=2.0)
    np.testing.assert_allclose(total, beat_align_reward(twisted, MUSIC_BEATS) + 2.0 * bad, rtol=1e-6)


def walking(speeds_per_frame: np.ndarray) -> np.ndarray:
    """The rest skeleton travelling forward, every joint at the given speed (m/s) between frames."""
    x = np.concatenate([[0.0], np.cumsum(speeds_per_frame / 60.0)])
    joints = np.repeat(REST_JOINTS[None].astype(np.float64), len(x), axis=0)
    joints[:, :, 2] += x[:, None]
    return joints


def test_speed_reward_is_zero_inside_the_band_and_the_log_ratio_outside():
    target = 0.8
    for ratio, expected in [(1.0, 0.0), (0.9, 0.0), (1.25, 0.0), (0.45, -np.log(2.0)), (2.5, -np.log(2.0))]:
        reward = speed_reward(walking(np.full(T, ratio * target)), target, band=(0.9, 1.25))
        assert reward.shape == (28,) and reward.dtype == np.float32
        np.testing.assert_allclose(reward, expected, atol=1e-5, err_msg=f"speed {ratio} x the target")


def test_speed_reward_reads_the_two_seconds_around_each_token():
    """Still for the first half of the window, at the target speed after: the still tokens pay, the
    moving ones (more than a second from the still part) do not, the ones in between pay less."""
    speeds = np.where(np.arange(T) < T // 2, 0.0, 0.8)
    reward = speed_reward(walking(speeds), 0.8)
    assert (reward[:3] < -5).all()  # 1e-6 m/s at most over the first token's 2 s: a large penalty
    assert (reward[-6:] == 0).all()
    middle = reward[12:18]
    assert (np.diff(middle) >= 0).all() and reward[3] < middle[0] and middle[-1] > -0.6


def test_token_rewards_add_the_speed_reward_at_its_rate():
    joints = pulsing_walk(0.5)
    beats_only = token_rewards(joints, MUSIC_BEATS, "balanced")
    slow_target = 10.0  # the walk is far slower than this
    with_speed = token_rewards(joints, MUSIC_BEATS, "balanced", speed_rate=2.0, speed_target=slow_target)
    np.testing.assert_allclose(with_speed, beats_only + 2.0 * speed_reward(joints, slow_target), rtol=1e-6)
    with pytest.raises(ValueError, match="speed target"):
        token_rewards(joints, MUSIC_BEATS, "balanced", speed_rate=1.0)
