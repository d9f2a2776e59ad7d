"""The duet's relative-position code: a polar grid in the leader's facing frame, round trip on real couples."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidOptionError
from engine.relative_position import DEFAULT_GRID, PolarGrid
from engine.skeleton import REST_JOINTS


def _standing(n: int, at: tuple[float, float], facing_deg: float) -> np.ndarray:
    """(n, 24, 3) the rest pose turned to ``facing_deg`` (0 = +z) with its pelvis at (x, z)."""
    a = np.radians(facing_deg)
    turn = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    body = (REST_JOINTS - REST_JOINTS[0]) @ turn.T + [at[0], 0.9, at[1]]
    return np.repeat(body[None], n, axis=0)


def test_a_follower_in_front_and_to_the_left_is_coded_in_the_leaders_frame():
    grid = PolarGrid(smooth_s=0.0)
    for facing in (0.0, 90.0, -135.0):
        leader = _standing(5, (1.0, -2.0), facing)
        ahead = np.array([np.sin(np.radians(facing)), 0.0, np.cos(np.radians(facing))])
        left = np.array([ahead[2], 0.0, -ahead[0]])
        # 0.75 m (a bin centre) straight ahead, then to his left: the same codes whichever way they face
        for where, sector in ((ahead, 0), (left, grid.bearings // 4)):
            follower = leader + 0.75 * where
            codes = grid.encode(leader, follower)
            assert np.all(codes == codes[0]) and codes[0] % grid.bearings == sector
            assert grid.radii[codes[0] // grid.bearings] <= 0.75 < grid.radii[codes[0] // grid.bearings + 1]
            back = grid.decode(codes, leader)
            np.testing.assert_allclose(back[:, [0, 2]], follower[:, 0, [0, 2]], atol=0.04)  # the rest pose faces 2 deg off
            assert np.all(back[:, 1] == 0.0)


def test_round_trip_on_the_real_couples(data_dir):
    from training.data.duet import load_duets

    errors = []
    for duet in load_duets(data_dir / "cmu_salsa_duet"):
        codes = DEFAULT_GRID.encode(duet.leader, duet.follower)
        assert codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < DEFAULT_GRID.size
        back = DEFAULT_GRID.decode(codes, duet.leader)
        errors.append(np.linalg.norm((back - duet.follower[:, 0])[:, [0, 2]], axis=1))
    error = np.concatenate(errors)
    assert np.median(error) < 0.03 and np.percentile(error, 95) < 0.10  # 2.5 and 8.7 cm when written
    assert DEFAULT_GRID.size == 384


def test_bad_grids_and_codes_are_refused():
    with pytest.raises(InvalidOptionError, match="radii"):
        PolarGrid(radii=(0.1, 0.5))
    with pytest.raises(InvalidOptionError, match="bearings"):
        PolarGrid(bearings=2)
    leader = _standing(3, (0.0, 0.0), 0.0)
    with pytest.raises(InvalidOptionError, match="codes must be"):
        DEFAULT_GRID.decode(np.array([0, 1, DEFAULT_GRID.size]), leader)
    with pytest.raises(InvalidOptionError, match="both be"):
        DEFAULT_GRID.encode(leader, leader[:2])
