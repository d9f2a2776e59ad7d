import numpy as np
import pytest

from engine import skeleton as sk
from engine.joint_rotations import HINGES, estimate_rest_skeleton, solve_rotations
from engine.rotation import axis_angle_to_matrix, quaternion_to_matrix
from tests.engine.poses import random_smpl_poses


def _aistpp_clips(directory):
    """The real AIST++ slices, converted from the CSV's z-up to SMPL's y-up: (150, 24, 3) each."""
    clips = {}
    for path in sorted(directory.glob("*.csv")):
        csv = np.loadtxt(path, delimiter=",").reshape(-1, 24, 3)
        clips[path.stem] = sk.zup_to_yup(csv)
    assert len(clips) >= 6
    return clips


def _fk(solution):
    joints, glob = sk.forward_kinematics_matrices(
        quaternion_to_matrix(solution.rotations), solution.translation, solution.rest_joints
    )
    return joints, glob


def _bone_dirs(joints):
    bones = joints[:, 1:] - joints[:, sk.PARENTS[1:]]
    return bones / np.linalg.norm(bones, axis=-1, keepdims=True)


def _angle_deg(a, b):
    cos = (np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_aistpp_round_trip_with_clip_rest_skeleton(aistpp_slices_dir):
    for name, joints in _aistpp_clips(aistpp_slices_dir).items():
        # The clips are exact SMPL FK outputs on the male rest skeleton (float32 in the CSV).
        np.testing.assert_allclose(sk.bone_lengths(joints), np.broadcast_to(sk.bone_lengths(sk.REST_JOINTS),
                                   (len(joints), 23)), atol=1e-5)
        solution = solve_rotations(joints, sk.REST_JOINTS)
        again, _ = _fk(solution)
        assert np.abs(_bone_dirs(again) - _bone_dirs(joints)).max() < 1e-4, name
        assert np.abs(again - joints).max() < 1e-4, name
        np.testing.assert_allclose(solution.translation, joints[:, 0] - sk.REST_JOINTS[0])


def test_aistpp_round_trip_with_estimated_rest_skeleton(aistpp_slices_dir):
    for name, joints in _aistpp_clips(aistpp_slices_dir).items():
        solution = solve_rotations(joints)
        # The median bone lengths of an exact SMPL clip are the SMPL rest skeleton's.
        np.testing.assert_allclose(solution.rest_joints, sk.REST_JOINTS, atol=1e-5)
        again, _ = _fk(solution)
        assert np.abs(_bone_dirs(again) - _bone_dirs(joints)).max() < 1e-4, name


def test_quaternions_unit_and_continuous(aistpp_slices_dir):
    for name, joints in _aistpp_clips(aistpp_slices_dir).items():
        q = solve_rotations(joints).rotations
        assert q.shape == (len(joints), 24, 4)
        np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-9)
        dots = np.sum(q[1:] * q[:-1], axis=-1)
        assert dots.min() > 0, f"{name}: a quaternion flips sign between frames"
        # Real dance at 30 fps: no joint turns by more than ~60 degrees between two frames (no twist pops).
        step = np.degrees(2 * np.arccos(np.clip(dots, -1, 1)))
        assert step.max() < 60, f"{name}: {step.max():.1f} degrees in one frame"


def test_random_poses_exact_bone_directions_and_hinge_twist():
    local = random_smpl_poses(1500, seed=3)
    translation = np.random.default_rng(4).normal(scale=0.5, size=(1500, 3))
    joints, glob = sk.forward_kinematics_matrices(local, translation)
    solution = solve_rotations(joints, sk.REST_JOINTS)
    again, glob_again = _fk(solution)
    assert np.abs(again - joints).max() < 1e-9
    assert np.abs(_bone_dirs(again) - _bone_dirs(joints)).max() < 1e-9
    error = _angle_deg(glob, glob_again)  # (T, 24) global rotation error per joint
    # Three children fix the pelvis and spine3 exactly.
    assert np.median(error[:, [0, 9]]) < 1e-6
    # Knee and elbow hinges recover the twist of thighs and upper arms.
    for j, (child, _, _) in HINGES.items():
        for k in (j, child):
            assert np.median(error[:, k]) < 5.0, (sk.JOINT_NAMES[k], np.median(error[:, k]))
            assert np.percentile(error[:, k], 90) < 15.0
    # Without the hinge the twist would be the swing-only guess: check that the hinge did the work.
    swing_only = np.median(error[:, [3, 6]])  # spine: twist split is unobservable
    assert swing_only > 5.0


def test_pure_hinge_is_recovered_exactly():
    rng = np.random.default_rng(5)
    n = 400
    aa = rng.normal(scale=0.4, size=(n, 24, 3))
    for _, (child, _, axis) in HINGES.items():
        aa[:, child] = np.radians(rng.uniform(20, 130, n))[:, None] * np.asarray(axis)
    joints, glob = sk.forward_kinematics_matrices(axis_angle_to_matrix(aa))
    _, glob_again = _fk(solve_rotations(joints, sk.REST_JOINTS))
    for j, (child, _, _) in HINGES.items():
        # (arccos near 1 resolves ~1e-6 degrees)
        assert _angle_deg(glob[:, j], glob_again[:, j]).max() < 1e-4
        assert _angle_deg(glob[:, child], glob_again[:, child]).max() < 1e-4


def test_straight_limb_holds_twist_and_never_jumps():
    # A leg straightening and bending again while the pelvis turns: the thigh twist must stay smooth.
    n = 120
    aa = np.zeros((n, 24, 3))
    aa[:, 0, 1] = np.linspace(0, np.pi, n)  # the body turns half round
    knee_bend = np.abs(np.linspace(-1.2, 1.2, n))  # straight in the middle
    aa[:, 4, 0] = knee_bend
    joints, glob = sk.forward_kinematics_matrices(axis_angle_to_matrix(aa))
    solution = solve_rotations(joints, sk.REST_JOINTS)
    _, glob_again = _fk(solution)
    assert _angle_deg(glob[:, 1], glob_again[:, 1]).max() < 1.0
    dots = np.abs(np.sum(solution.rotations[1:] * solution.rotations[:-1], axis=-1))
    assert np.degrees(2 * np.arccos(np.clip(dots, -1, 1))).max() < 5.0


def test_estimated_rest_skeleton_uses_median_lengths():
    local = random_smpl_poses(300, seed=6)
    joints, _ = sk.forward_kinematics_matrices(local)
    rng = np.random.default_rng(7)
    # Jitter each joint by up to 5 mm, as a generator would.
    noisy = joints + rng.normal(scale=0.002, size=joints.shape)
    rest = estimate_rest_skeleton(noisy)
    np.testing.assert_allclose(sk.bone_lengths(rest), np.median(sk.bone_lengths(noisy), axis=0), atol=1e-12)
    # Directions are SMPL's.
    np.testing.assert_allclose(_bone_dirs(rest[None])[0], _bone_dirs(sk.REST_JOINTS[None])[0], atol=1e-12)
    solution = solve_rotations(noisy)
    again, _ = _fk(solution)
    # Single-child bones keep the noisy direction exactly; the error is only where Kabsch fits 3 children.
    cos = np.sum(_bone_dirs(again) * _bone_dirs(noisy), axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 10.0
    assert np.linalg.norm(again - noisy, axis=-1).mean() < 0.02


def test_bad_input_raises_clear_error():
    with pytest.raises(sk.InvalidMotionError, match="shape"):
        solve_rotations(np.zeros((10, 22, 3)))
    bad = np.zeros((4, 24, 3))
    bad[2, 5, 1] = np.nan
    with pytest.raises(sk.InvalidMotionError, match="frame 2"):
        solve_rotations(bad)
