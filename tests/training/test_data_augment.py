"""Style labels, mirror images, re-timed copies, the held-out tail and the split by style."""

from __future__ import annotations

import numpy as np
import pytest

from engine.accompaniment import fit_beat_grid
from engine.skeleton import JOINT_NAMES, MIRRORED_JOINTS
from training.data import DataConfig, MotionClip, load_bvh_clip, load_split, load_windows, split_by_take
from training.data.augment import (
    augment_clips,
    catch_up_clips,
    drift_clip,
    drift_rate,
    hold_out_tail,
    mirror_clip,
    retime_clip,
)
from training.data.styles import STYLES, style_index, style_of
from training.errors import DataError
from training.metrics.beats import motion_beats
from training.metrics.physical import mean_joint_speed

ALL_BVH = ["cmu_salsa_duet", "cmu_131", "cmu_05", "cmu_94"]


def clip(name, take, frames, style=None, source="bvh", split=None):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    joints = np.cumsum(rng.normal(scale=0.01, size=(frames, 24, 3)), axis=0)
    return MotionClip(joints=joints, name=name, take_id=take, source=source, style=style, split=split)


def test_mirrored_joint_table_swaps_every_left_with_its_right():
    for j, m in enumerate(MIRRORED_JOINTS):
        name, other = JOINT_NAMES[j], JOINT_NAMES[m]
        if name.startswith(("l_", "r_")):
            assert other == {"l": "r", "r": "l"}[name[0]] + name[1:]
        else:
            assert m == j
    np.testing.assert_array_equal(MIRRORED_JOINTS[MIRRORED_JOINTS], np.arange(24))  # an involution


def test_mirror_image_of_a_real_take_is_a_reflection(data_dir):
    salsa = load_bvh_clip(data_dir / "cmu_salsa_duet" / "60_09.bvh")
    mirrored = mirror_clip(salsa)
    assert mirrored.name == "60_09~mirror" and mirrored.take_id == salsa.take_id
    # the left ankle of the mirror image is the right ankle of the take, reflected in x
    np.testing.assert_allclose(mirrored.joints[:, 7], salsa.joints[:, 8] * [-1, 1, 1], atol=1e-6)
    np.testing.assert_array_equal(mirror_clip(mirrored).joints, salsa.joints)  # twice is the take again
    # what a reflection keeps: every speed, the floor, and so the motion beats the accompaniment is built on
    assert mean_joint_speed(mirrored.joints, 60) == pytest.approx(mean_joint_speed(salsa.joints, 60), rel=1e-6)
    np.testing.assert_array_equal(motion_beats(mirrored.joints), motion_beats(salsa.joints))
    assert mirrored.joints[..., 1].min() == salsa.joints[..., 1].min()


def test_retimed_take_is_faster_by_the_rate_and_keeps_its_path(data_dir):
    ballet = load_bvh_clip(data_dir / "cmu_05" / "05_06.bvh")
    fast = retime_clip(ballet, 1.15)
    assert fast.name == "05_06@x1.15" and fast.meta["tempo_rate"] == 1.15
    assert fast.num_frames == pytest.approx(ballet.num_frames / 1.15, abs=2)
    assert mean_joint_speed(fast.joints, 60) == pytest.approx(1.15 * mean_joint_speed(ballet.joints, 60), rel=0.02)
    np.testing.assert_allclose(fast.joints[0], ballet.joints[0], atol=1e-6)  # same start, same path
    slow = retime_clip(ballet, 0.87)
    assert slow.num_frames == pytest.approx(ballet.num_frames / 0.87, abs=2)  # frames within the span
    # the beats move with the motion: the accompaniment is synthesised on the re-timed take's own beats
    assert len(motion_beats(fast.joints)) / fast.duration_s > len(motion_beats(slow.joints)) / slow.duration_s
    with pytest.raises(DataError, match="tempo rate"):
        retime_clip(ballet, 0.0)


def test_a_drifting_take_speeds_up_and_slows_down_and_its_beats_follow(data_dir):
    """The rate swings between 1 / 1.2 and 1.2 over 6 s: the motion's speed follows it segment by segment,
    the path is the take's, and the accompaniment's beats sit where the re-timed motion's beats are."""
    salsa = load_bvh_clip(data_dir / "cmu_salsa_duet" / "60_09.bvh")
    drifting = drift_clip(salsa, 0.2, period_s=6.0)
    assert drifting.name == "60_09@drift0.2"
    amount, period, phase = drifting.meta["tempo_drift"]
    assert (amount, period) == (0.2, 6.0) and drift_clip(salsa, 0.2, 6.0).meta["tempo_drift"][2] == phase
    rate = drift_rate(drifting.num_frames, amount, period, phase)
    assert rate.min() == pytest.approx(1 / 1.2, abs=1e-3) and rate.max() == pytest.approx(1.2, abs=1e-3)
    # the same poses in the same order: first and last frame are the take's
    np.testing.assert_allclose(drifting.joints[0], salsa.joints[0], atol=1e-5)
    assert np.linalg.norm(drifting.joints[-1] - salsa.joints[-1], axis=-1).max() < 0.05
    assert drifting.num_frames == pytest.approx(salsa.num_frames / np.mean(rate), rel=0.02)
    # where it plays fast the motion is faster than where it plays slow (1.2 / (1 / 1.2) = 1.44 x)
    fast, slow = rate > 1.12, rate < 1 / 1.12
    speed = np.linalg.norm(np.diff(drifting.joints, axis=0), axis=-1).mean(axis=1)  # (T-1,)
    assert speed[fast[1:]].mean() > 1.25 * speed[slow[1:]].mean()
    # every accompaniment beat near a beat of the re-timed motion (as for a steady take: most of them)
    beats, moved = drifting.meta["accompaniment_beats"], motion_beats(drifting.joints)
    near = np.abs(beats[:, None] - moved[None, :]).min(axis=1) <= 6  # 0.1 s
    steady = fit_beat_grid(motion_beats(salsa.joints), salsa.num_frames).beats
    near_steady = np.abs(steady[:, None] - motion_beats(salsa.joints)[None, :]).min(axis=1) <= 6
    assert beats.min() >= 0 and beats.max() < drifting.num_frames and len(beats) == pytest.approx(len(steady), abs=2)
    assert near.mean() >= near_steady.mean() - 0.05
    out = augment_clips([salsa], mirror=True, tempo_drift=0.2, tempo_drift_period_s=6.0)
    assert [c.name for c in out] == ["60_09", "60_09@drift0.2", "60_09~mirror", "60_09@drift0.2~mirror"]
    np.testing.assert_array_equal(out[3].meta["accompaniment_beats"], beats)  # a mirror keeps the timing
    with pytest.raises(DataError, match="tempo drift"):
        drift_clip(salsa, 0.0)


def test_catch_up_pieces_start_out_of_phase_and_end_as_captured(data_dir):
    """Each piece shows the take ``offset`` seconds late (or early) at its first frame, exactly as captured
    once settled; its accompaniment's beats are the take's steady beat at the piece's own times."""
    salsa = load_bvh_clip(data_dir / "cmu_salsa_duet" / "60_09.bvh")
    pieces = catch_up_clips(salsa, copy=0, piece_s=6.0, max_offset_s=0.3, settle_s=1.5)
    assert [p.name for p in pieces] == [f"60_09@catch0.{i}" for i in range(len(pieces))]
    assert len(pieces) == (salsa.num_frames - 2 * 18) // 360  # 0.3 s of margin at both ends
    grid = fit_beat_grid(motion_beats(salsa.joints), salsa.num_frames).beats
    src_t = np.arange(salsa.num_frames) / 60.0
    offsets = []
    for piece in pieces:
        start, end = piece.meta["frames"]
        offset, settle = piece.meta["catch_up"]
        offsets.append(offset)
        assert end - start == piece.num_frames == 360 and piece.take_id == salsa.take_id
        settled = int(np.ceil(settle * 60))
        np.testing.assert_allclose(piece.joints[settled:], salsa.joints[start + settled : end], atol=1e-5)
        first = [np.interp(start / 60.0 - offset, src_t, salsa.joints[:, j, k]) for j in (0, 15) for k in range(3)]
        np.testing.assert_allclose(piece.joints[0, [0, 15]].reshape(-1), first, atol=1e-5)
        np.testing.assert_allclose(piece.meta["accompaniment_beats"], grid[(grid >= start) & (grid < end)] - start)
    offsets += [p.meta["catch_up"][0] for copy in (1, 2, 3) for p in catch_up_clips(salsa, copy=copy)]
    assert len(set(offsets)) == len(offsets) == 4 * len(pieces)  # every piece of every copy its own offset
    assert max(np.abs(offsets)) <= 0.3 and min(offsets) < -0.1 and max(offsets) > 0.1  # late and early
    out = augment_clips([salsa], mirror=True, catch_up=1)
    assert [c.name for c in out][:2] == ["60_09", "60_09@catch0.0"] and len(out) == 2 * (1 + len(pieces))
    with pytest.raises(DataError, match="catch-up"):
        catch_up_clips(salsa, max_offset_s=2.0)


def test_a_take_with_its_song_is_mirrored_but_never_retimed():
    with_song = clip("aist", "A", 300, style="street", source="aistpp")
    with_song.music_features = np.zeros((300, 438), dtype=np.float32)
    silent = clip("60_01", "S", 300, style="salsa")
    out = augment_clips([with_song, silent], mirror=True, tempo_rates=[0.87, 1.0, 1.15])
    assert [c.name for c in out] == ["aist", "60_01", "60_01@x0.87", "60_01@x1.15", "aist~mirror", "60_01~mirror",
                                     "60_01@x0.87~mirror", "60_01@x1.15~mirror"]
    with pytest.raises(DataError, match="recorded song"):
        retime_clip(with_song, 1.15)


def test_styles_come_from_the_source():
    assert style_of(clip("60_01", "cmu_salsa_01", 10)) == "salsa"
    assert style_of(clip("61_14", "cmu_salsa_14", 10)) == "salsa"
    assert style_of(clip("05_17", "cmu_05_17", 10)) == "ballet"
    assert style_of(clip("131_02", "cmu_131_02", 10)) == "street"
    assert style_of(clip("94_01", "cmu_94_01", 10)) == "indian"
    assert style_of(clip("gBR_sBM", "gBR", 10, source="aistpp_csv")) == "street"
    assert style_of(clip("my_take", "mine", 10)) is None  # a user's own BVH: "any"
    assert style_of(clip("07_01", "cmu_07_01", 10)) is None  # a CMU subject with no style here
    assert [style_index(s) for s in (None, "any", *STYLES)] == [0, 0, 1, 2, 3, 4]


def test_a_single_take_style_gets_a_held_out_tail():
    clips = [clip("94_01", "cmu_94_01", 1800, style="indian"), clip("60_01", "cmu_salsa_01", 1000, style="salsa"),
             clip("05_02", "cmu_05_02", 600, style="ballet"), clip("05_03", "cmu_05_03", 600, style="ballet")]
    out = hold_out_tail(clips, 0.2)
    names = [c.name for c in out]
    assert names == ["94_01_head", "94_01_tail", "60_01", "05_02", "05_03"]
    head, tail = out[0], out[1]
    assert head.num_frames == 1440 and tail.num_frames == 360 and tail.split == "val" and head.split is None
    np.testing.assert_array_equal(np.concatenate([head.joints, tail.joints]), clips[0].joints)
    assert head.take_id != tail.take_id
    assert out[2] is clips[1]  # salsa's single take too, but its 20 % (3.3 s) is too short to hold out
    assert out[3] is clips[2] and out[4] is clips[3]  # two ballet takes: the split holds one out
    assert hold_out_tail(clips, 0.0) == clips
    short = [clip("94_01", "cmu_94_01", 200, style="indian")]  # a tail shorter than 5 s is not cut
    assert hold_out_tail(short, 0.2) == short


def test_split_by_style_holds_out_takes_of_every_style():
    clips = [clip(f"60_{t:02d}", f"salsa_{t}", 2000, style="salsa") for t in range(12)]
    clips += [clip(f"05_{t:02d}", f"ballet_{t}", 400, style="ballet") for t in range(10)]
    pooled = split_by_take(clips, 0.12, seed=0)
    by_style = split_by_take(clips, 0.12, seed=0, by_style=True)
    styles_held_out = {c.style for c in by_style.val}
    assert styles_held_out == {"salsa", "ballet"}
    for style in ("salsa", "ballet"):
        frames = [sum(c.num_frames for c in side if c.style == style) for side in (by_style.train, by_style.val)]
        assert 0.05 < frames[1] / sum(frames) < 0.25
    assert not (by_style.train_takes & by_style.val_takes)
    assert len(pooled.val) > 0  # the pooled split works as before


def test_the_default_data_config_holds_out_every_style_and_augments_only_training(data_dir):
    cfg = DataConfig(aistpp_csv_dirs=[str(data_dir / "aistpp_slices")],
                     bvh_paths=[str(data_dir / d) for d in ALL_BVH], window=240, stride=16, val_fraction=0.12,
                     split_by_style=True, single_take_holdout=0.2, mirror=True, tempo_rates=[0.87, 1.15])
    split = load_split(cfg)
    assert {c.style for c in split.val} == set(STYLES)
    assert {c.style for c in split.train} == set(STYLES)
    assert "cmu_94_01_tail" in split.val_takes and "cmu_94_01_head" in split.train_takes
    train, val, _ = load_windows(cfg)
    assert [c.name for c in val.clips] == [c.name for c in split.val]  # held out: as captured, no copies
    names = {c.name for c in train.clips}
    assert names >= {"60_01", "60_01~mirror", "60_01@x1.15", "60_01@x0.87~mirror"}
    assert not any(c.take_id in split.val_takes for c in train.clips)
    minutes = sum(c.num_frames for c in split.train + split.val) / 3600
    assert 16 < minutes < 20  # the real dance at hand: about 18 minutes at the true frame rates
