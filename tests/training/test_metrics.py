"""The paper's metrics against the official implementation's golden vectors, plus physical metrics on
constructed motions whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from engine.skeleton import REST_JOINTS
from training.metrics import beats, features, fid, physical


@pytest.fixture(scope="module")
def our_features(golden):
    data, _ = golden
    out = {}
    for name in ("gt", "pred"):
        feats = [features.extract_motion_features(s) for s in data[f"{name}_sequences"]]
        out[f"{name}_kinetic"] = np.stack([f[0] for f in feats])
        out[f"{name}_manual"] = np.stack([f[1] for f in feats])
    return out


# --- parity with the official code -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gt", "pred"])
def test_kinetic_features_match_official(golden, our_features, name):
    data, _ = golden
    ours, theirs = our_features[f"{name}_kinetic"], data[f"{name}_kinetic"]
    assert ours.shape == theirs.shape == (len(data[f"{name}_sequences"]), 72)
    # values reach ~1e3 (the acceleration bug), so compare relative to the magnitude
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["gt", "pred"])
def test_manual_features_match_official_every_column(golden, our_features, name):
    data, _ = golden
    ours, theirs = our_features[f"{name}_manual"], data[f"{name}_manual"]
    assert ours.shape == theirs.shape
    worst_per_column = np.abs(ours - theirs).max(axis=0)
    assert (worst_per_column <= 1e-6).all(), f"columns off: {np.nonzero(worst_per_column > 1e-6)[0]}"


def test_kinetic_depends_on_zero_start(golden):
    """The inherited acceleration bug makes the raw (non-zero-started) features differ: zero-start matters."""
    data, _ = golden
    seq = data["gt_sequences"][0]
    raw = features.kinetic_features(seq)
    assert not np.allclose(raw, data["gt_kinetic"][0], rtol=1e-3)
    np.testing.assert_allclose(features.kinetic_features(features.zero_start(seq)), data["gt_kinetic"][0],
                               rtol=1e-6)


def test_template_constants():
    assert features.HUMERUS_LENGTH == pytest.approx(0.2568, abs=1e-4)
    assert features.SHOULDER_WIDTH == pytest.approx(0.3908, abs=1e-4)
    assert features.HIP_WIDTH == pytest.approx(0.1192, abs=1e-4)


@pytest.mark.parametrize("source", ["golden_features", "our_features"])
def test_fid_and_diversity_match_official(golden, our_features, source):
    data, expected = golden
    feats = data if source == "golden_features" else our_features
    k = fid.fid_and_diversity(feats["gt_kinetic"], feats["pred_kinetic"])
    g = fid.fid_and_diversity(feats["gt_manual"], feats["pred_manual"])
    got = {"fid_k": k["fid"], "fid_g": g["fid"], "div_k": k["div"], "div_g": g["div"],
           "div_k_gt": k["div_gt"], "div_g_gt": g["div_gt"]}
    for key, value in got.items():
        assert value == pytest.approx(expected[key], rel=1e-4), key


def test_beat_align_scores_match_official(golden):
    data, expected = golden
    scores = [beats.beat_align_score(expected["music_beats"], s) for s in data["pred_sequences"][:10]]
    np.testing.assert_allclose(scores, expected["bas_first10"], rtol=1e-4, atol=1e-12)
    assert np.mean(scores) == pytest.approx(expected["bas_mean_first10"], rel=1e-4)


def test_feature_extraction_is_fast(golden):
    import time

    data, _ = golden
    seqs = list(data["gt_sequences"]) + list(data["pred_sequences"])
    start = time.perf_counter()
    for s in seqs:
        features.extract_motion_features(s)
    assert time.perf_counter() - start < 10.0  # 148 sequences; ~0.5 s on an idle 2-core box


def test_prediction_cut_to_max_frames(golden):
    data, _ = golden
    seq = data["gt_sequences"][0]
    long = np.concatenate([seq, seq[::-1]])  # 240 frames
    cut = features.extract_motion_features(long, max_frames=120)
    np.testing.assert_allclose(cut[0], data["gt_kinetic"][0], rtol=1e-6)
    assert not np.allclose(features.extract_motion_features(long)[0], data["gt_kinetic"][0], rtol=1e-3)


# --- FID / diversity / BAS on hand-made inputs -------------------------------------------------------
def test_frechet_distance_basic_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert fid.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([3.0, 0, 0, 0])
    assert fid.frechet_distance(a, shifted) == pytest.approx(9.0, rel=1e-6)  # only the means differ


def test_diversity_is_mean_pairwise_distance():
    pts = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])  # pair distances 5, 10, 5
    assert fid.diversity(pts) == pytest.approx(20.0 / 3.0)
    with pytest.raises(ValueError):
        fid.diversity(pts[:1])


def _bobbing(T=240, period=30):
    """All joints move up and down sinusoidally: speed minima twice per period."""
    t = np.arange(T)
    offset = 0.1 * np.sin(2 * np.pi * t / period)
    joints = np.repeat(REST_JOINTS[None], T, axis=0).copy()
    joints[:, :, 1] += offset[:, None]
    return joints


def test_motion_beats_at_speed_minima_and_perfect_alignment():
    joints = _bobbing()
    mb = beats.motion_beats(joints)
    # speed is minimal at the turning points t = 7.5 + 15 k; speed index t lies between frames t and t+1
    expected = 7 + 15 * np.arange(16)
    np.testing.assert_array_equal(mb[:-1], expected[:-1])
    assert abs(mb[-1] - expected[-1]) <= 1  # the last one feels the edge of the smoothing window
    assert beats.beat_align_score(mb, joints) == pytest.approx(1.0)
    far = beats.beat_align_score(mb[:-1] + 7, joints)  # 7 frames from the nearest beat: exp(-49/18)
    assert far == pytest.approx(np.exp(-49 / 18))
    assert beats.beat_align_score([10_000], joints) is None  # beyond the motion
    still = np.repeat(REST_JOINTS[None], 50, axis=0)
    assert beats.beat_align_score([10, 20], still) == 0.0  # no motion beat at all


def test_beat_timing_separates_rate_from_timing():
    """BAS rewards more motion beats; beat_timing tells a dance on the beat from one that merely has many."""
    joints = _bobbing()  # motion beats every 15 frames: 7, 22, 37, ...
    music = np.arange(7, 239, 30)  # music beats on every other motion beat
    on = beats.beat_timing(music, joints)
    assert on["motion_beats_per_music_beat"] == pytest.approx(2.0, abs=0.15)
    assert on["on_beat_fraction"] == pytest.approx(0.5, abs=0.07)  # half the motion beats are on a music beat
    assert on["chance_on_beat_fraction"] == pytest.approx(7 / 30, abs=0.02)  # +-3 frames of a 30-frame beat
    off = beats.beat_timing(music + 15 // 2, joints)  # music half-way between motion beats
    assert off["on_beat_fraction"] == 0.0 and off["motion_beats_per_music_beat"] == on["motion_beats_per_music_beat"]
    assert beats.beat_timing([10_000], joints) is None
    assert beats.beat_timing([10, 20], np.repeat(REST_JOINTS[None], 50, axis=0)) is None


# --- physical metrics on constructed motions ---------------------------------------------------------
FPS = 60.0


def _standing(T=240):
    joints = np.repeat(REST_JOINTS[None], T, axis=0).copy()
    joints[:, :, 1] -= REST_JOINTS[:, 1].min()  # lowest joint on the floor (y = 0)
    return joints


def test_still_pose_is_one_long_frozen_stretch():
    joints = _standing(T=181)
    m = physical.physical_metrics(joints, FPS)
    assert m["longest_frozen_s"] == pytest.approx(3.0)
    assert m["mean_joint_speed"] == 0.0
    assert m["foot_skating_ratio"] == 0.0
    assert m["ground_contact_ratio"] == 1.0
    assert m["jitter"] == 0.0
    assert m["pfc"] == 0.0


def test_sliding_feet_skate_but_stepping_in_place_does_not():
    T = 240
    slide = _standing(T)
    slide[:, :, 0] += np.arange(T)[:, None] * (1.0 / FPS)  # whole body glides at 1 m/s, feet down
    assert physical.foot_skating_ratio(slide, FPS) > 0.95
    assert physical.mean_joint_speed(slide, FPS) == pytest.approx(1.0)

    step = _standing(T)  # alternately lift each foot 20 cm straight up, never moving sideways
    phase = np.arange(T) / FPS * 2 * np.pi
    lift_l = 0.2 * np.clip(np.sin(phase), 0, None)
    lift_r = 0.2 * np.clip(-np.sin(phase), 0, None)
    for j in (4, 7, 10):
        step[:, j, 1] += lift_l
    for j in (5, 8, 11):
        step[:, j, 1] += lift_r
    assert physical.foot_skating_ratio(step, FPS) == 0.0
    assert physical.longest_frozen_seconds(step, FPS) < 0.2
    assert 0.9 < physical.ground_contact_ratio(step) <= 1.0


def test_floating_body_has_a_large_floor_range():
    T = 300
    drift = _standing(T)
    drift[:, :, 1] += np.linspace(0.0, 0.5, T)[:, None]  # rises 50 cm over 5 s
    assert physical.floor_range(drift, FPS) > 0.35
    assert physical.floor_range(_standing(T), FPS) == 0.0
    assert physical.ground_contact_ratio(drift) < 0.2


def test_jitter_grows_with_noise():
    smooth = _bobbing(T=240)
    noisy = smooth + np.random.default_rng(1).normal(scale=0.01, size=smooth.shape)
    assert physical.jitter(noisy, FPS) > 20 * physical.jitter(smooth, FPS)


def test_pfc_is_frame_rate_consistent_and_penalises_sliding_under_acceleration():
    T = 300
    t = np.arange(T) / FPS
    moving = _standing(T)
    moving[:, :, 0] += 0.3 * np.sin(2 * np.pi * t)[:, None]  # whole body (feet too) sways: accelerating root
    planted = moving.copy()
    for j in (7, 8, 10, 11):  # feet stay where they are while the body sways
        planted[:, j, 0] = moving[0, j, 0]
    assert physical.pfc(moving, FPS) > 10 * max(physical.pfc(planted, FPS), 1e-6)
    # 60 fps input is scored at 30 fps: every other frame gives the same number
    assert physical.pfc(moving, FPS) == pytest.approx(physical.pfc(moving[::2], 30.0), rel=1e-9)


def test_resample_linear_keeps_every_other_frame():
    joints = np.random.default_rng(2).normal(size=(61, 24, 3))
    np.testing.assert_allclose(physical.resample_linear(joints, 60, 30), joints[::2])
    up = physical.resample_linear(joints[::2], 30, 60)
    assert up.shape == (61, 24, 3)
    np.testing.assert_allclose(up[1], 0.5 * (joints[0] + joints[2]))


def test_shuffled_in_time_moves_the_beats_with_their_rows():
    from engine.audio import MusicFeatures

    rows = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 438), np.float32)  # row k holds k
    music = MusicFeatures(features=rows, beats=np.array([3, 17, 40, 159]), duration_s=20 / 7.5, mode="full",
                          source_path="song.ogg", content_hash="0")
    shuffled = beats.shuffled_in_time(music, seed=4)
    order = shuffled.features[:, 0].astype(int)  # new row j came from old row order[j]
    assert sorted(order) == list(range(20)) and not np.array_equal(order, np.arange(20))
    assert len(shuffled.beats) == 4
    for beat in shuffled.beats:  # every beat sits in the row it came with, at the same offset in it
        assert int(order[beat // 8]) * 8 + beat % 8 in music.beats
    np.testing.assert_array_equal(beats.shuffled_in_time(music, seed=4).beats, shuffled.beats)  # seeded
    assert music.beats.tolist() == [3, 17, 40, 159]  # the original is left alone
