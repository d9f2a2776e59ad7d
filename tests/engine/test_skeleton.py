import numpy as np

from engine import skeleton as sk
from engine.rotation import axis_angle_to_matrix, matrix_to_quaternion, quaternion_to_matrix


def test_rest_pose_fk_reproduces_table():
    joints = sk.forward_kinematics(np.zeros((1, 72)), np.zeros((1, 3)))
    np.testing.assert_allclose(joints[0], sk.REST_JOINTS, atol=1e-12)


def test_split_covers_every_joint_once():
    both = np.sort(np.concatenate([sk.UPPER_JOINTS, sk.LOWER_JOINTS]))
    np.testing.assert_array_equal(both, np.arange(24))
    assert len(sk.LOWER_JOINTS) * 3 == 27 and len(sk.UPPER_JOINTS) * 3 == 45


def test_fk_keeps_bone_lengths_under_random_rotations():
    rng = np.random.default_rng(0)
    poses = rng.normal(scale=0.6, size=(50, 24, 3))
    trans = rng.normal(size=(50, 3))
    joints = sk.forward_kinematics(poses, trans)
    np.testing.assert_allclose(sk.bone_lengths(joints), np.broadcast_to(sk.bone_lengths(sk.REST_JOINTS), (50, 23)),
                               atol=1e-10)
    # The root rotates about the pelvis rest joint, so the pelvis moves by the translation only.
    np.testing.assert_allclose(joints[:, 0], sk.REST_JOINTS[0] + trans, atol=1e-12)


def test_axis_conversion_round_trip_and_handedness():
    p = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(sk.zup_to_yup(sk.yup_to_zup(p)), p)
    np.testing.assert_allclose(sk.yup_to_zup(np.array([0.0, 1.0, 0.0])), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(sk.yup_to_zup(p), p @ sk.YUP_TO_ZUP.T)
    assert np.isclose(np.linalg.det(sk.YUP_TO_ZUP), 1.0)


def test_quaternion_matrix_round_trip():
    aa = np.random.default_rng(2).normal(size=(200, 3)) * 1.5
    m = axis_angle_to_matrix(aa)
    np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(m)), m, atol=1e-10)


def test_facing_direction_is_forward_on_the_floor():
    from engine.skeleton import REST_JOINTS, facing_direction

    np.testing.assert_allclose(facing_direction(REST_JOINTS), [0.035, 0.0, 0.999], atol=1e-3)  # SMPL's +z
    turned = REST_JOINTS @ np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]).T  # +z -> +x
    leaning = turned + np.array([0.0, 1.0, 0.0]) * REST_JOINTS[:, :1] * 0.3  # hips tilted: still on the floor
    frames = np.stack([REST_JOINTS, turned, leaning])
    facing = facing_direction(frames)
    assert facing.shape == (3, 3) and np.all(facing[:, 1] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(facing, axis=1), 1.0)
    assert facing[1, 0] > 0.99 and facing[2, 0] > 0.99
