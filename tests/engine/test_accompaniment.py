"""Accompaniment for silent motion: a steady beat fitted to the motion, heard where the motion beats."""

from __future__ import annotations

import numpy as np
import pytest

from engine.accompaniment import accompaniment_for_motion, fit_beat_grid
from engine.audio import extract_features
from training.data import load_csv_dir
from training.metrics.beats import beat_align_score, motion_beats


def test_fit_beat_grid_recovers_tempo_and_phase_from_jittered_beats():
    rng = np.random.default_rng(0)
    true = 17 + 30 * np.arange(20)  # 120 bpm from frame 17
    observed = true + rng.integers(-2, 3, size=true.size)
    observed = np.delete(observed, [3, 11])  # a dancer does not mark every beat
    grid = fit_beat_grid(observed, n_frames=620)
    assert abs(grid.bpm - 120) < 3
    assert np.abs(grid.beats[:, None] - true[None]).min(axis=0).max() <= 3  # every true beat has one
    snapped = np.isin(grid.beats, observed)
    assert snapped.sum() == observed.size  # every observed beat became a musical beat


@pytest.fixture(scope="module")
def real_clips(aistpp_slices_dir):
    return load_csv_dir(aistpp_slices_dir)[:3]


def test_synthesised_track_beats_land_on_the_motion_beats(real_clips, tmp_path):
    for clip in real_clips:
        wav, grid = accompaniment_for_motion(clip.joints, tmp_path, clip.name)
        detected = extract_features(wav, "full", cache_dir=False).beats  # engine.audio's beat tracker, 60 fps
        assert detected.size >= 3
        # the beat tracker hears the synthesised beats where they were placed ...
        to_grid = np.abs(detected[:, None] - grid.beats[None]).min(axis=1)
        assert np.median(to_grid) <= 2, (clip.name, detected, grid.beats)
        # ... and they align with the motion far better than the same track half a beat later
        aligned = beat_align_score(detected, clip.joints)
        shifted = beat_align_score(detected + int(grid.period / 2), clip.joints)
        assert aligned > 0.3 and aligned > shifted + 0.2, (clip.name, aligned, shifted)
        # most motion beats have a musical beat within 3 frames (50 ms)
        beats = motion_beats(clip.joints)
        assert np.mean(np.abs(beats[:, None] - detected[None]).min(axis=1) <= 3) >= 0.5


def test_accompaniment_is_cached_by_content(real_clips, tmp_path):
    clip = real_clips[0]
    first, _ = accompaniment_for_motion(clip.joints, tmp_path, clip.name)
    stamp = first.stat().st_mtime_ns
    again, _ = accompaniment_for_motion(clip.joints, tmp_path, clip.name)
    assert again == first and again.stat().st_mtime_ns == stamp
    other, _ = accompaniment_for_motion(clip.joints[::-1].copy(), tmp_path, clip.name)
    assert other != first and len(list(tmp_path.glob("*.wav"))) == 2
