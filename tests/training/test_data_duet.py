"""Duets (training.data.duet) on the real CMU salsa couples: one world, one trim, one floor for both."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.skeleton import facing_direction
from training.data.duet import (
    DuetClip,
    load_duet,
    load_duets,
    mirror_duet,
    pair_paths,
    rotate_duet,
    split_duets,
    walk_in_frames,
)
from training.errors import DataError, DataFormatError
from training.metrics.duet import hand_contact_share, pelvis_distance


@pytest.fixture(scope="module")
def duet_dir(data_dir):
    return data_dir / "cmu_salsa_duet"


@pytest.fixture(scope="module")
def duets(duet_dir):
    return load_duets(duet_dir)


def _pelvis_distance(duet: DuetClip) -> np.ndarray:
    return pelvis_distance(duet.leader, duet.follower)


def _hand_contact(duet: DuetClip) -> float:
    return hand_contact_share(duet.leader, duet.follower)


def test_every_take_pairs_its_leader_with_its_follower(duet_dir, tmp_path):
    pairs = pair_paths(duet_dir)
    assert len(pairs) == 13
    assert all(a.stem[:2] == "60" and b.stem[:2] == "61" and a.stem[3:] == b.stem[3:] for a, b in pairs)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(duet_dir / "60_01.bvh", lone / "60_01.bvh")
    with pytest.raises(DataError, match="no 61_01.bvh"):
        pair_paths(lone)


def test_the_couple_dances_in_one_world(duets):
    """What only a shared world, scale and clock give: the real couple's distance, facing and contact."""
    assert [d.name for d in duets][:3] == ["cmu_salsa_01", "cmu_salsa_02", "cmu_salsa_03"]
    minutes = sum(d.num_frames for d in duets) / 60 / 60
    assert 5.5 < minutes < 7.5  # about 7 minutes per dancer, less the walk-ins
    for duet in duets:
        assert duet.leader.shape == duet.follower.shape and duet.fps == 60.0
        distance = _pelvis_distance(duet)
        assert 0.5 < np.median(distance) < 0.8, duet.name  # 0.6-0.8 m apart, as the data README says
        to_follower = duet.follower[:, 0] - duet.leader[:, 0]
        to_follower[:, 1] = 0.0
        to_follower /= np.linalg.norm(to_follower, axis=1, keepdims=True)
        faces = (facing_direction(duet.leader) * to_follower).sum(axis=1)
        assert np.mean(faces > 0.5) > 0.6, duet.name  # the leader mostly faces his partner
        assert 0.05 < _hand_contact(duet) < 0.45, duet.name  # hands in contact for 8-34 % (README)
        floors = duet.meta["floor_heights"]
        assert max(abs(f) for f in floors) < 0.03, duet.name  # one floor fits both dancers' feet


def test_the_walk_in_is_cut(duets, duet_dir):
    first = duets[0]
    assert 2.0 < first.meta["walk_in_frames"] / 60 < 6.0  # they walk up from about 2 m apart
    assert _pelvis_distance(first)[0] < 1.2  # the couple is together from the first frame kept
    # The same take before the cut: the couple starts about 2 m apart.
    from training.data.bvh_mocap import load_bvh_clip

    leader = load_bvh_clip(duet_dir / "60_01.bvh", ground=False).joints
    follower = load_bvh_clip(duet_dir / "61_01.bvh", ground=False).joints
    n = min(len(leader), len(follower))
    start = np.linalg.norm((leader[:30, 0] - follower[:30, 0])[:, [0, 2]], axis=1)
    assert start.mean() > 1.6
    assert walk_in_frames(leader[:n], follower[:n]) > 120


def test_a_pair_that_does_not_line_up_is_refused(duet_dir, tmp_path):
    """A follower file with fewer frames (a truncated copy) is not a partner of the leader."""
    text = (duet_dir / "61_01.bvh").read_text().splitlines()
    frames_at = next(i for i, line in enumerate(text) if line.startswith("Frames:"))
    n = int(text[frames_at].split()[1])
    text[frames_at] = f"Frames: {n - 100}"
    (tmp_path / "cmu_salsa_duet").mkdir()
    shutil.copy(duet_dir.parent / "cmu_trials.csv", tmp_path / "cmu_trials.csv")  # its true frame rate
    short = tmp_path / "cmu_salsa_duet" / "61_01.bvh"
    short.write_text("\n".join(text[: len(text) - 100]) + "\n")
    with pytest.raises(DataFormatError, match="line up frame for frame"):
        load_duet(duet_dir / "60_01.bvh", short)
    with pytest.raises(DataFormatError, match="one frame count"):
        DuetClip(leader=np.zeros((10, 24, 3), np.float32), follower=np.zeros((9, 24, 3), np.float32),
                 name="x", take_id="x")
    with pytest.raises(DataError, match="not found"):
        load_duet(duet_dir / "60_01.bvh", tmp_path / "none.bvh")


def test_held_out_pairs_stay_out(duets):
    train, held = split_duets(duets, ["cmu_salsa_11"])
    assert [d.name for d in held] == ["cmu_salsa_11"]
    assert len(train) == 12 and "cmu_salsa_11" not in {d.take_id for d in train}
    copies = [mirror_duet(d) for d in train] + [rotate_duet(d, 90) for d in train]
    assert {d.take_id for d in copies} == {d.take_id for d in train}  # copies keep their take
    with pytest.raises(DataError, match="not among the duets"):
        split_duets(duets, ["cmu_salsa_99"])


def test_mirrored_and_rotated_couples_keep_their_dance(duets):
    duet = duets[1]
    mirrored = mirror_duet(duet)
    np.testing.assert_allclose(_pelvis_distance(mirrored), _pelvis_distance(duet), atol=1e-5)
    assert _hand_contact(mirrored) == pytest.approx(_hand_contact(duet))
    np.testing.assert_allclose(mirror_duet(mirrored).leader, duet.leader, atol=1e-6)  # its own inverse
    assert not np.allclose(mirrored.leader, duet.leader)
    turned = rotate_duet(duet, 90)
    np.testing.assert_allclose(_pelvis_distance(turned), _pelvis_distance(duet), atol=1e-5)
    np.testing.assert_allclose(turned.leader[..., 1], duet.leader[..., 1], atol=1e-6)  # heights unchanged
    np.testing.assert_allclose(rotate_duet(turned, -90).follower, duet.follower, atol=1e-5)
    # a quarter turn about +y takes the leader's facing +z to +x
    np.testing.assert_allclose(facing_direction(turned.leader)[:, [0, 2]],
                               facing_direction(duet.leader)[:, [2, 0]] * [1, -1], atol=1e-5)
