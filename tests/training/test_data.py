"""Training data on the real files: AIST++ CSV slices and CMU BVH retargeted onto SMPL-24."""

from __future__ import annotations

import re

import numpy as np
import pytest

from engine.skeleton import FOOT_JOINTS, REST_JOINTS, bone_lengths
from training.data import load_bailando_json_dir, load_bvh_clip, load_bvh_paths, load_csv_clip, load_csv_dir
from training.data.bvh_mocap import MAX_ACCEL_M, MAX_STEP_M, cmu_listed_fps, true_fps
from training.data.csv_clips import csv_to_yup
from training.errors import DataError

REST_BONES = bone_lengths(REST_JOINTS[None])[0]  # (23,)


def lowest_foot(joints: np.ndarray) -> np.ndarray:
    return joints[:, FOOT_JOINTS, 1].min(axis=1)  # (T,)


# --- folders of clips ----------------------------------------------------------------------------------
def test_folder_loaders_refuse_a_missing_or_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a clip")
    for load, suffix, what in [(load_csv_dir, ".csv", "AIST++ CSV"), (load_bailando_json_dir, ".json", "Bailando JSON")]:
        with pytest.raises(DataError, match=f"^{re.escape(what)} folder not found: .*missing$"):
            load(tmp_path / "missing")
        with pytest.raises(DataError, match=f"^no {re.escape(suffix)} files in "):
            load(tmp_path)
    with pytest.raises(DataError, match=r"^no \.bvh files in "):
        load_bvh_paths([tmp_path])


# --- AIST++ CSV slices ---------------------------------------------------------------------------------
def test_csv_clips_are_smpl_skeleton_at_60fps_yup(aistpp_slices_dir):
    clips = load_csv_dir(aistpp_slices_dir)
    assert len(clips) == 6
    for clip in clips:
        j = clip.joints.astype(np.float64)
        assert clip.fps == 60 and j.shape == (299, 24, 3)  # 150 frames at 30 fps span 149/30 s
        # Bone lengths equal the male SMPL rest skeleton at every frame, inserted frames included.
        assert np.abs(bone_lengths(j) - REST_BONES).max() < 1e-5
        # y-up: the head is above the pelvis, the pelvis above the feet, at every frame (no dips here).
        assert np.all(j[:, 15, 1] > j[:, 0, 1] + 0.2)
        assert np.all(j[:, 0, 1] > lowest_foot(j) + 0.5)
        # Feet on the floor: contact near y = 0, nothing sinks more than a centimetre.
        assert lowest_foot(j).min() > -0.01
        assert abs(np.percentile(lowest_foot(j), 5)) < 0.02


def test_csv_even_frames_are_the_original_frames_with_the_pelvis_offset(aistpp_slices_dir):
    path = sorted(aistpp_slices_dir.glob("*.csv"))[0]
    raw = np.loadtxt(path, delimiter=",")
    ungrounded = load_csv_clip(path, ground=False).joints.astype(np.float64)
    # Frame 2k of the 60 fps clip is CSV frame k converted to y-up plus the constant SMPL J0.
    expected = np.stack([raw[:, 0::3], raw[:, 2::3], -raw[:, 1::3]], axis=-1) + REST_JOINTS[0]
    np.testing.assert_allclose(ungrounded[0::2], expected, atol=2e-6)
    np.testing.assert_allclose(csv_to_yup(raw), expected, atol=1e-12)
    # Inserted frames lie between their neighbours (no overshoot) for the root, which is interpolated linearly.
    mid = (ungrounded[0:-2:2, 0] + ungrounded[2::2, 0]) / 2
    np.testing.assert_allclose(ungrounded[1::2, 0], mid, atol=1e-6)


def test_csv_overlapping_slices_share_a_take_and_agree(aistpp_slices_dir):
    s4 = load_csv_clip(aistpp_slices_dir / "gJS_sBM_cAll_d01_mJS3_ch02_slice4.csv", ground=False)
    s7 = load_csv_clip(aistpp_slices_dir / "gJS_sBM_cAll_d01_mJS3_ch02_slice7.csv", ground=False)
    assert s4.take_id == s7.take_id == "gJS_sBM_cAll_d01_mJS3_ch02"
    assert (s4.music_offset_s, s7.music_offset_s) == (2.0, 3.5)
    # 1.5 s apart: 60 fps frame 90.. of slice 4 is frame 0.. of slice 7.
    np.testing.assert_allclose(s4.joints[90:], s7.joints[: 299 - 90], atol=1e-5)


# --- CMU BVH -> SMPL ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bvh_clips(data_dir):
    # 60_09: the leader take with the worst capture glitches (legs and thorax); 61_09: its follower;
    # 131_01: the 31-joint rig with the fastest real kick (a toe at ~10 m/s).
    names = ["cmu_salsa_duet/60_09.bvh", "cmu_salsa_duet/61_09.bvh", "cmu_131/131_01.bvh"]
    return {n: load_bvh_clip(data_dir / n) for n in names}


def test_bvh_retarget_has_smpl_bone_lengths_at_every_frame(bvh_clips):
    for clip in bvh_clips.values():
        j = clip.joints.astype(np.float64)
        assert j.shape[1:] == (24, 3) and j.shape[0] > 400
        assert np.abs(bone_lengths(j) - REST_BONES).max() < 1e-5


def test_bvh_frame_rate_is_cmus_not_the_header(bvh_clips, data_dir):
    """The salsa headers say 120 fps; CMU's listing says 60, and so it is read: 2575 frames stay 2575 at
    60 fps (minus the capture's settling frames), a 43 s take, not 21 s."""
    clip = bvh_clips["cmu_salsa_duet/61_09.bvh"]
    assert clip.fps == 60 and clip.meta["src_fps"] == 60
    assert clip.num_frames == 2575 - sum(clip.meta["trimmed_frames"])
    assert sum(clip.meta["trimmed_frames"]) <= 4
    assert bvh_clips["cmu_131/131_01.bvh"].meta["src_fps"] == 120  # header and listing agree
    assert true_fps(data_dir / "cmu_05" / "05_02.bvh", 60.0) == 60.0  # resampled by its converter: header
    assert cmu_listed_fps(data_dir / "cmu_05" / "05_02.bvh") == 120.0
    assert true_fps(data_dir / "cmu_salsa_duet" / "61_09.bvh", 120.0) == 60.0


def test_salsa_feet_step_at_a_salsa_cadence(bvh_clips):
    """A physical check of the time base: in salsa each foot steps once per four beats, at 150-220 bpm
    about 0.6-0.9 lifts a second (0.75 measured); read at the header's 120 fps it doubles to ~1.5."""
    for name in ("cmu_salsa_duet/61_09.bvh", "cmu_salsa_duet/60_09.bvh"):
        j = bvh_clips[name].joints.astype(np.float64)
        rate = _foot_lifts_per_second(j[:, 7, 1], fps=60.0)
        assert 0.5 < rate < 1.0, (name, rate)


def _foot_lifts_per_second(ankle_height: np.ndarray, fps: float) -> float:
    from scipy.ndimage import gaussian_filter1d

    above = ankle_height - np.percentile(ankle_height, 5)
    lifted = (gaussian_filter1d(above, 2) > 0.04).astype(int)
    return float(np.sum(np.diff(lifted) == 1)) / (len(ankle_height) / fps)


def test_cc_base_ballet_loads_without_its_added_t_pose(data_dir):
    """Subject 5's CC_Base rig (141 joints, centimetres, 60 fps, frame 0 an added T-pose)."""
    clip = load_bvh_clip(data_dir / "cmu_05" / "05_02.bvh")
    j = clip.joints.astype(np.float64)
    assert clip.meta["rig"] == "cc_base_141" and clip.meta["src_fps"] == 60
    assert clip.num_frames == 562 - 1 - sum(clip.meta["trimmed_frames"])
    assert np.abs(bone_lengths(j) - REST_BONES).max() < 1e-5
    assert 1.3 < float(np.median(j[:, 15, 1] - j[:, [10, 11], 1].min(axis=1))) < 1.8  # a standing dancer
    step = np.linalg.norm(np.diff(j, axis=0), axis=-1)
    assert step.max() <= MAX_STEP_M  # no jump from a T-pose into the dance


def test_bvh_retarget_has_no_jumps(bvh_clips):
    """No joint moves more than 0.25 m between 60 fps frames (15 m/s) and no second difference exceeds
    0.2 m. Why these bounds: the fastest clean capture here (the follower's hand in a spin, on SMPL's
    longer arm) reaches 0.22 m/frame and 0.16 m second difference; a kick's toe in 131_01 0.18 m/frame.
    A glitch or a flipped bone moves a joint by 0.3-1.5 m in one frame, as the raw 60_09 does."""
    for name, clip in bvh_clips.items():
        j = clip.joints.astype(np.float64)
        step = np.linalg.norm(np.diff(j, axis=0), axis=-1)
        accel = np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1)
        assert step.max() <= MAX_STEP_M, name
        assert accel.max() <= MAX_ACCEL_M + 1e-9, name
        assert step[:, 0].max() < 0.1, name  # the pelvis itself stays under 6 m/s
    assert bvh_clips["cmu_salsa_duet/60_09.bvh"].meta["repaired_frames"] > 0  # it did need repairs
    assert bvh_clips["cmu_salsa_duet/61_09.bvh"].meta["repaired_frames"] == 0  # the clean take is untouched


def test_bvh_retarget_feet_on_floor_and_upright(bvh_clips):
    for name, clip in bvh_clips.items():
        j = clip.joints.astype(np.float64)
        low = lowest_foot(j)
        assert low.min() > -0.03, name
        assert abs(np.percentile(low, 5)) < 0.03, name  # the follower dances on the balls of her feet
        assert np.median(low) < 0.08, name  # dancing on the floor, not floating
        up = j[:, 15, 1] - j[:, 0, 1]
        # Upright: head above pelvis in (nearly) every frame; salsa dips tip the follower for a moment.
        assert np.median(up) > 0.45 and np.mean(up > 0.2) > 0.97, name
        # Standing height of SMPL (head joint above the floor) in the upright frames.
        assert 1.3 < np.median(j[:, 15, 1]) < 1.7, name


def test_bvh_duet_partners_share_a_take(bvh_clips, data_dir):
    leader = bvh_clips["cmu_salsa_duet/60_09.bvh"]
    follower = bvh_clips["cmu_salsa_duet/61_09.bvh"]
    assert leader.take_id == follower.take_id == "cmu_salsa_09"
    assert leader.num_frames == follower.num_frames
    # Same performance, same space: the partners stay within arm's reach most of the time.
    gap = np.linalg.norm(leader.joints[:, 0, [0, 2]] - follower.joints[:, 0, [0, 2]], axis=-1)
    assert np.median(gap) < 1.5
