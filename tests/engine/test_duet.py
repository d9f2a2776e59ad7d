"""A follower for a leader (engine.duet, Choreographer.accompany) with a tiny random model: the contract."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import Cancelled, InvalidMotionError, InvalidOptionError
from engine.generate import Choreographer, GenerateOptions
from engine.relative_position import DEFAULT_GRID
from engine.sampling import SamplingOptions

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def duo(duo_model_dir) -> Choreographer:
    return Choreographer(duo_model_dir)


@pytest.fixture(scope="module")
def leader(data_dir) -> np.ndarray:
    from training.data.duet import load_duet

    duet = load_duet(data_dir / "cmu_salsa_duet" / "60_02.bvh", data_dir / "cmu_salsa_duet" / "61_02.bvh")
    return duet.leader[:600]  # 10 s


def test_a_follower_dances_in_the_leaders_world_and_time(duo, leader):
    stages = []
    dance = duo.accompany(leader, options=GenerateOptions(sampling=SamplingOptions(seed=3)),
                          progress=lambda fraction, message: stages.append(message))
    assert dance.joints.shape == (600, 24, 3) and dance.fps == 60.0 and np.all(np.isfinite(dance.joints))
    assert len(dance.codes_up) == 75 and dance.meta["role"] == "follower"
    assert dance.meta["music"] == "accompaniment on the leader's beats"
    assert any("Following the leader" in m for m in stages)
    # its pelvis where its relative-position codes put it around the leader (within the grid's reach)
    distance = np.linalg.norm((dance.joints[:, 0] - leader[:, 0])[:, [0, 2]], axis=1)
    assert distance.max() < DEFAULT_GRID.radii[-1] + 0.1
    assert dance.rotations is not None and dance.rotations.shape == (600, 24, 4)
    # reproducible with a seed; 30 fps on request
    again = duo.accompany(leader, options=GenerateOptions(sampling=SamplingOptions(seed=3), rotations=False))
    np.testing.assert_array_equal(again.codes_up, dance.codes_up)
    assert duo.accompany(leader, options=GenerateOptions(fps=30.0, rotations=False)).joints.shape[0] == 300


def test_bad_leaders_and_models_are_refused(duo, leader, tiny_model_dir):
    with pytest.raises(InvalidMotionError):
        duo.accompany(leader[:, :20])
    with pytest.raises(InvalidMotionError):
        duo.accompany(leader[:8])  # less than two steps
    with pytest.raises(InvalidOptionError, match="no follower"):
        Choreographer(tiny_model_dir).accompany(leader)
    with pytest.raises(Cancelled):
        duo.accompany(leader, options=GenerateOptions(rotations=False), cancel=lambda: True)


def test_a_song_is_heard_from_the_leaders_first_frame(duo, leader, short_song):
    song = short_song(6.0, name="with music")  # shorter than the leader: its last frame is held
    dance = duo.accompany(leader, song=song, options=GenerateOptions(rotations=False))
    assert dance.song_path == str(song) and dance.meta["music"] == str(song)
    assert dance.joints.shape == (600, 24, 3)
    assert len(dance.music_beats) > 3 and dance.music_beats.max() < 600


def _run_cli(*args: str):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=600)


def test_the_accompany_command_writes_the_follower_beside_its_leader(duo, leader, tmp_path):
    from engine.dance import Dance
    from engine.dance_files import read_dance_joints, write_dance

    lead = write_dance(Dance(joints=leader, fps=60.0), tmp_path, "lead", ["npz"])["npz"]
    np.testing.assert_allclose(read_dance_joints(lead), leader, atol=1e-6)
    out = tmp_path / "out"
    done = _run_cli("accompany", str(lead), "-o", str(out), "--model", str(duo.model.path), "-q", "--seed", "1",
                    "--fps", "30")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["lead_follower.bvh", "lead_follower.json", "lead_follower.npz"]
    with np.load(out / "lead_follower.npz") as data:
        assert data["joints"].shape == (300, 24, 3) and float(data["fps"]) == 30.0
        np.testing.assert_allclose(data["leader_joints"], leader[::2], atol=1e-5)  # the leader as read, at 30 fps
    # the BVH it wrote reads back as the follower (the engine's own BVH is a valid leader too)
    assert read_dance_joints(out / "lead_follower.bvh").shape[1:] == (24, 3)
    for bad, message in ((tmp_path / "none.npz", "not found"), (out / "lead_follower.json", "not .json")):
        done = _run_cli("accompany", str(bad), "-o", str(tmp_path / "x"), "--model", str(duo.model.path))
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "x").exists()


def test_bodies_are_kept_apart_on_the_floor(leader):
    from engine.duet import keep_apart
    from training.metrics.duet import torso_clash_share

    lead = leader.astype(np.float64)
    close = lead.copy()
    close[:, :, 0] += 0.12  # a follower 12 cm beside him: torsos through each other
    apart = keep_apart(close, lead)
    assert torso_clash_share(lead, close) == 1.0 and torso_clash_share(lead, apart) == 0.0
    np.testing.assert_array_equal(apart[..., 1], close[..., 1])  # heights untouched, only the floor plane
    far = lead + [1.0, 0.0, 0.0]
    np.testing.assert_array_equal(keep_apart(far, lead), far)  # far enough: nothing moves


def _facing_pair(frames: int, hand_gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Two bodies with arms out and forearms bent forward, facing each other, his left hand and her right
    hand (and, within millimetres, his right and her left) ``hand_gap`` apart."""
    from engine import skeleton as sk

    aa = np.zeros((1, 24, 3))
    aa[0, 18, 1], aa[0, 19, 1] = -1.2, 1.2  # elbows bent: forearms forward (+z)
    body = sk.forward_kinematics(aa)[0]
    turn = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])  # half a turn about y
    him = np.tile(body, (frames, 1, 1))
    her = np.tile(body @ turn.T, (frames, 1, 1))
    his_hand, her_hand = him[0, sk.HAND_TIPS[0]], her[0, sk.HAND_TIPS[1]]
    her += [his_hand[0] - her_hand[0], 0.0, his_hand[2] - her_hand[2] + hand_gap]  # lined up, gap along z
    return him, her


def test_a_follower_takes_the_leaders_hand_when_hers_stays_close():
    """Hands 15 cm apart for a second: hers are brought to his (a palm's gap) by her arms alone (shoulders
    fixed, bones kept, nothing else moved); hands close for only a moment, or far apart, are left alone."""
    from engine import skeleton as sk
    from engine.duet import HOLD_GAP_M, join_hands

    him, her = _facing_pair(60, 0.15)
    held = join_hands(her, him)
    for mine, his in ((1, 0), (0, 1)):
        gap = np.linalg.norm(held[:, sk.HAND_TIPS[mine]] - him[:, sk.HAND_TIPS[his]], axis=-1)
        assert np.abs(gap[10:50] - HOLD_GAP_M).max() < 1e-6  # held in the middle of the second
    others = [j for j in range(24) if j not in (18, 19, 20, 21, 22, 23)]  # all but elbows, wrists, hands
    np.testing.assert_array_equal(held[:, others], her[:, others])
    np.testing.assert_allclose(sk.bone_lengths(held), sk.bone_lengths(her), atol=1e-9)
    # she steps in over half a second: her hand eases towards his around the hold's start, never jumps
    him90, approach = _facing_pair(90, 0.15)
    approach[:, :, 2] += np.interp(np.arange(90), [0, 30], [0.25, 0.0])[:, None]
    stepping = join_hands(approach, him90)
    raw = np.linalg.norm(approach[:, sk.HAND_TIPS[1]] - him90[:, sk.HAND_TIPS[0]], axis=-1)
    gap = np.linalg.norm(stepping[:, sk.HAND_TIPS[1]] - him90[:, sk.HAND_TIPS[0]], axis=-1)
    assert np.array_equal(gap[:5], raw[:5]) and np.abs(gap[40:] - HOLD_GAP_M).max() < 1e-6
    assert np.linalg.norm(np.diff(stepping[:, sk.HAND_TIPS[1]], axis=0), axis=-1).max() < 0.05  # < 3 m/s
    # close for only 0.1 s of 2 s (then she steps 0.5 m back): a passing hand
    passing = np.concatenate([her[:6], her[6:].repeat(3, axis=0)[:114] + [0.5, 0.0, 0.0]])
    np.testing.assert_array_equal(join_hands(passing, np.concatenate([him, him])), passing)
    far_him, far_her = _facing_pair(60, 0.4)
    np.testing.assert_array_equal(join_hands(far_her, far_him), far_her)
