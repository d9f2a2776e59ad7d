"""Windows, the take-aware split and the on-disk cache."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from training.data import DataConfig, MotionClip, MotionWindows, load_csv_clip, load_sources, split_by_take
from training.data.cache import cached_arrays, save_npz_atomic


def clip(name, take, frames, split=None, music=False):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    return MotionClip(joints=rng.normal(size=(frames, 24, 3)), name=name, take_id=take, source="test",
                      split=split, music_features=rng.normal(size=(frames - 80, 438)) if music else None)


def test_windows_shapes_and_content():
    clips = [clip("a", "A", 300, music=True), clip("b", "B", 240, music=True), clip("c", "C", 100, music=True)]
    ds = MotionWindows(clips, length=240, stride=40)
    assert len(ds) == 2 + 1  # starts 0, 40 in a; 0 in b; c is too short
    assert ds.skipped == ["c"]
    item = ds[1]
    assert item["joints"].shape == (240, 24, 3) and item["music"].shape == (240, 438)
    np.testing.assert_array_equal(item["joints"], clips[0].joints[40:280])
    # The music of a (220 frames) ends inside the window: its last frame repeats.
    np.testing.assert_array_equal(item["music"][:180], clips[0].music_features[40:])
    np.testing.assert_array_equal(item["music"][180:], np.repeat(clips[0].music_features[-1:], 60, axis=0))
    assert ds.joints_array().shape == (3, 240, 24, 3)
    assert ds.take_ids() == ["A", "A", "B"]
    assert "music" not in MotionWindows([clip("d", "D", 250)], 240, 8)[0]


def test_split_keeps_takes_apart():
    clips = [clip(f"{s}_{t:02d}", f"salsa_{t:02d}", 500 + 10 * t) for t in range(13) for s in (60, 61)]
    clips += [clip("slice4", "gJS", 299), clip("slice7", "gJS", 299)]
    clips += [clip("aist_train", "T1", 400, split="train"), clip("aist_test", "T2", 400, split="test")]
    split = split_by_take(clips, val_fraction=0.15, seed=3)
    assert split.train_takes.isdisjoint(split.val_takes)
    assert split.train_takes | split.val_takes == {c.take_id for c in clips}
    assert "T1" in split.train_takes and "T2" in split.val_takes  # the source's own split wins
    for t in range(13):  # leader and follower of a take are on the same side
        sides = {("val" if c in split.val else "train") for c in clips if c.take_id == f"salsa_{t:02d}"}
        assert len(sides) == 1
    free = [c for c in clips if c.split is None]
    val_frames = sum(c.num_frames for c in split.val if c.split is None)
    assert 0.05 < val_frames / sum(c.num_frames for c in free) < 0.25
    # Deterministic for a seed, and a different seed picks different takes.
    assert split_by_take(clips, 0.15, 3).val_takes == split.val_takes
    assert split_by_take(clips, 0.15, 4).val_takes != split.val_takes


def test_cache_hits_and_invalidates(tmp_path, aistpp_slices_dir):
    src = tmp_path / "clip_slice0.csv"
    shutil.copy(sorted(aistpp_slices_dir.glob("*.csv"))[0], src)
    cache = tmp_path / "cache"
    first = load_csv_clip(src, cache_dir=cache)
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1
    # A hit returns identical arrays without recomputing: poison the computation to prove it.
    calls = []
    hit = cached_arrays(cache, src, "aistpp_csv|ground=True", lambda: calls.append(1) or {})
    assert not calls
    np.testing.assert_array_equal(hit["joints"], first.joints)
    np.testing.assert_array_equal(load_csv_clip(src, cache_dir=cache).joints, first.joints)
    # Changing the source's content misses the cache, replaces the stale entry and gives new arrays.
    raw = np.loadtxt(src, delimiter=",")
    raw[:, 0::3] += 1.0  # move the dancer 1 m along x
    np.savetxt(src, raw, delimiter=",")
    moved = load_csv_clip(src, cache_dir=cache)
    np.testing.assert_allclose(moved.joints[..., 0], first.joints[..., 0] + 1.0, atol=1e-5)
    assert len(list(cache.glob("*.npz"))) == 1 and not entries[0].exists()
    # Another setting of the loader is another entry; nothing half-written is left behind.
    load_csv_clip(src, cache_dir=cache, ground=False)
    assert len(list(cache.glob("*.npz"))) == 2
    assert not [p for p in os.listdir(cache) if p.endswith(".tmp")]


def test_failed_npz_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "codes.npz"
    save_npz_atomic(path, {"up": np.arange(3)})

    def disk_full(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("engine.files.os.replace", disk_full)  # the one atomic writer
    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(path, {"up": np.arange(5)})
    with np.load(path) as z:
        np.testing.assert_array_equal(z["up"], np.arange(3))
    assert os.listdir(tmp_path) == ["codes.npz"]  # the temporary file is gone


def test_load_sources_from_a_config(tmp_path, data_dir):
    cfg = {"aistpp_csv_dirs": [str(data_dir / "aistpp_slices")],
           "bvh_paths": [str(data_dir / "cmu_131" / "131_02.bvh")], "cache_dir": str(tmp_path / "c")}
    clips = load_sources(cfg)
    assert [c.source for c in clips] == ["bvh"] + ["aistpp_csv"] * 6
    assert all(c.fps == 60 and c.joints.dtype == np.float32 for c in clips)
    with pytest.raises(Exception, match="unknown data option"):
        load_sources({"bvh_path": "x"})
    with pytest.raises(Exception, match="names no sources"):
        load_sources(DataConfig())
