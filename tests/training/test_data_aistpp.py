"""The official AIST++ layout and Bailando's JSON files, on synthetic folders laid out like the real ones."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from engine.skeleton import REST_JOINTS, bone_lengths
from training.data import load_aistpp, load_bailando_json, load_motion_pickle, paper_splits
from training.errors import DataFormatError, UnsafeDataError

TRAIN = ["gBR_sBM_cAll_d04_mBR1_ch01", "gBR_sFM_cAll_d05_mBR5_ch14", "gPO_sBM_cAll_d10_mPO2_ch03"]
VAL = ["gBR_sBM_cAll_d04_mBR0_ch01"]
TEST = ["gBR_sBM_cAll_d04_mBR0_ch02"]
IGNORED = "gBR_sFM_cAll_d05_mBR5_ch14"


def write_motion(path, poses, trans, scaling):
    with open(path, "wb") as f:
        pickle.dump({"smpl_loss": np.float64(1.5), "smpl_poses": poses, "smpl_scaling": np.array([scaling]),
                     "smpl_trans": trans}, f)


@pytest.fixture
def aist_root(tmp_path):
    root = tmp_path / "aist_plusplus_final"
    (root / "motions").mkdir(parents=True)
    (root / "splits").mkdir()
    (root / "all_musics").mkdir()
    (root / "all_musics" / "mBR0.wav").write_bytes(b"RIFF")
    rng = np.random.default_rng(0)
    for i, name in enumerate(TRAIN + VAL + TEST):
        n = 30 + i
        poses = rng.normal(scale=0.3, size=(n, 72))
        trans = rng.normal(scale=50.0, size=(n, 3)) + [0.0, 150.0, 0.0]  # AIST++ stores centimetre-ish units
        write_motion(root / "motions" / f"{name}.pkl", poses, trans, 93.5)
    (root / "splits" / "crossmodal_train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "splits" / "crossmodal_val.txt").write_text("\n".join(VAL) + "\n")
    (root / "splits" / "crossmodal_test.txt").write_text("\n".join(TEST) + "\n")
    (root / "ignore_list.txt").write_text(f"{IGNORED}.json\ngLO_sFM_cAll_d13_mLO2_ch01\n")
    return root


def test_paper_splits(aist_root):
    splits = paper_splits(aist_root)
    assert splits["train"] == [TRAIN[0], TRAIN[2]]  # crossmodal_train minus the ignore list
    assert splits["test"] == TEST + VAL  # the paper tests on crossmodal_test + crossmodal_val


def test_load_aistpp_clips_and_fk(aist_root):
    clips = load_aistpp(aist_root)
    assert [c.name for c in clips] == [TRAIN[0], TRAIN[2], *TEST, *VAL]
    assert [c.split for c in clips] == ["train", "train", "test", "test"]
    by_name = {c.name: c for c in clips}
    # Music file found by the music id in the name, where it exists.
    assert by_name[TEST[0]].music_path == aist_root / "all_musics" / "mBR0.wav"
    assert by_name[TRAIN[0]].music_path is None
    for clip in clips:
        motion = load_motion_pickle(aist_root / "motions" / f"{clip.name}.pkl")
        j = clip.joints.astype(np.float64)
        assert j.shape == (motion["smpl_poses"].shape[0], 24, 3) and clip.take_id == clip.name
        # FK facts independent of the implementation: rest bone lengths, and the pelvis at J0 + trans/scale.
        np.testing.assert_allclose(bone_lengths(j), np.broadcast_to(bone_lengths(REST_JOINTS[None]), (len(j), 23)),
                                   atol=1e-5)
        np.testing.assert_allclose(j[:, 0], REST_JOINTS[0] + motion["smpl_trans"] / 93.5, atol=1e-5)


def test_aistpp_known_pose(tmp_path, aist_root):
    # A 90 degree turn of the root about +y and a 90 degree knee bend about +x: positions known by hand.
    poses = np.zeros((1, 72))
    poses[0, 0:3] = [0.0, np.pi / 2, 0.0]
    poses[0, 4 * 3 : 4 * 3 + 3] = [np.pi / 2, 0.0, 0.0]  # l_knee
    write_motion(aist_root / "motions" / f"{TRAIN[0]}.pkl", poses, np.zeros((1, 3)), 1.0)
    j = load_aistpp(aist_root, splits=("train",), limit=1)[0].joints.astype(np.float64)[0]
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # R_y(90°)
    J = REST_JOINTS
    np.testing.assert_allclose(j[4], J[0] + turn @ (J[4] - J[0]), atol=1e-6)  # knee: only the root turns it
    shin = J[7] - J[4]
    bent = np.array([shin[0], -shin[2], shin[1]])  # R_x(90°) @ shin
    np.testing.assert_allclose(j[7], j[4] + turn @ bent, atol=1e-6)


def test_aistpp_cache_and_missing_layout(tmp_path, aist_root):
    cache = tmp_path / "cache"
    first = load_aistpp(aist_root, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == len(first)
    second = load_aistpp(aist_root, cache_dir=cache)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.joints, b.joints)
    (aist_root / "splits" / "crossmodal_val.txt").unlink()
    with pytest.raises(Exception, match="crossmodal_val.txt"):
        load_aistpp(aist_root)


def test_motion_pickle_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"smpl_poses": Evil()}))
    with pytest.raises(UnsafeDataError, match="refusing to load io.open"):
        load_motion_pickle(path)
    assert not marker.exists()
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataFormatError):
        load_motion_pickle(tmp_path / "bad.pkl")


# --- Bailando JSON ----------------------------------------------------------------------------------------
def test_bailando_json(tmp_path):
    rng = np.random.default_rng(1)
    dance = rng.normal(size=(50, 72))
    music = rng.normal(size=(64, 438))  # test files keep the whole song: longer than the dance
    folder = tmp_path / "aistpp_test_full_wav"
    folder.mkdir()
    path = folder / "gBR_sBM_cAll_d04_mBR0_ch02.json"
    path.write_text(json.dumps({"id": "gBR_sBM_cAll_d04_mBR0_ch02", "music_array": music.tolist(),
                                "dance_array": dance.tolist()}))
    clip = load_bailando_json(path)
    np.testing.assert_allclose(clip.joints, dance.reshape(50, 24, 3), atol=1e-6)
    np.testing.assert_allclose(clip.music_features, music, atol=1e-6)
    assert (clip.split, clip.take_id, clip.music_fps, clip.fps) == ("test", "gBR_sBM_cAll_d04_mBR0_ch02", 60.0, 60.0)
    grounded = load_bailando_json(path, ground=True)
    assert grounded.joints[:, [7, 8, 10, 11], 1].min() <= 0.0 + 1e-6
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"music_array": music.tolist(), "dance_array": dance[:, :70].tolist()}))
    with pytest.raises(DataFormatError, match="T x 72"):
        load_bailando_json(bad)
