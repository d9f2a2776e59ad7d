"""Duet measures (training.metrics.duet) on the real salsa couples and on constructed pairs."""

from __future__ import annotations

import numpy as np
import pytest

from engine.skeleton import MIRRORED_JOINTS
from training.metrics import duet as m


@pytest.fixture(scope="module")
def couples(data_dir):
    from training.data.duet import load_duets

    return load_duets(data_dir / "cmu_salsa_duet")


def test_the_real_couples_measure_as_couples(couples):
    shifted_bed, real_bed, shifted_corr, real_corr = [], [], [], []
    for duet in couples:
        lead, follow = duet.leader.astype(np.float64), duet.follower.astype(np.float64)
        got = m.duet_measures(lead, follow)
        assert 0.5 < got["median_distance_m"] < 0.8
        assert got["facing_each_other"] > 0.25 and got["in_front"] > 0.5
        assert got["torso_clash"] < 0.05 and 0.05 < got["hand_contact"] < 0.45
        assert got["mirror_copy_distance_m"] > 0.10  # a real follower is not the leader's mirror image
        late = np.roll(follow, 240, axis=0)  # the same follower 4 s late: the C1 control's kind of pair
        real_bed.append(got["bed"])
        shifted_bed.append(m.beat_echo_degree(lead, late))
        real_corr.append(got["speed_correlation"])
        shifted_corr.append(m.speed_correlation(lead, late))
    # in time, the follower echoes the leader's beats and speed more than 4 s late
    assert np.mean(real_bed) > np.mean(shifted_bed) and np.mean(real_corr) > np.mean(shifted_corr) + 0.1


def test_constructed_pairs():
    rng = np.random.default_rng(0)
    from engine.skeleton import REST_JOINTS

    walk = REST_JOINTS[None] + np.cumsum(rng.normal(0, 0.01, (300, 1, 3)), axis=0) * [1, 0, 1]
    walk = walk + np.sin(np.arange(300) / 7.0)[:, None, None] * 0.05 * (np.arange(24) % 3 == 0)[None, :, None]
    assert m.beat_echo_degree(walk, walk) == pytest.approx(1.0)
    assert m.speed_correlation(walk, walk) == pytest.approx(1.0)
    mirror = walk[:, MIRRORED_JOINTS].copy()
    mirror[..., 0] *= -1.0
    assert m.mirror_copy_distance(walk, mirror) < 1e-9  # a pure mirror copy
    apart = walk + [1.0, 0.0, 0.0]
    np.testing.assert_allclose(m.pelvis_distance(walk, apart), 1.0)
    assert m.distance_w1(m.pelvis_distance(walk, apart), np.full(300, 0.7)) == pytest.approx(0.3)
    assert m.torso_clash_share(walk, walk) == 1.0 and m.torso_clash_share(walk, apart) == 0.0
