import numpy as np
import pytest

from engine import skeleton as sk
from engine.bvh import read_bvh, write_bvh
from engine.errors import BvhError, BvhFormatError
from engine.joint_rotations import solve_rotations
from engine.rotation import matrix_to_quaternion, quaternion_to_matrix
from tests.engine.poses import random_smpl_poses


def _smpl_motion(num_frames=40, seed=0):
    local = random_smpl_poses(num_frames, seed=seed)
    translation = np.cumsum(np.random.default_rng(seed).normal(scale=0.02, size=(num_frames, 3)), axis=0)
    rest = sk.REST_JOINTS * 1.1  # not the SMPL default, to catch offsets taken from the wrong place
    joints, _ = sk.forward_kinematics_matrices(local, translation, rest)
    return matrix_to_quaternion(local), translation, rest, joints


def _in_smpl_order(motion):
    return motion.world_positions()[:, [motion.names.index(n) for n in sk.JOINT_NAMES]]


@pytest.mark.parametrize("order", ["ZXY", "XYZ", "ZYX", "YZX"])
def test_write_read_round_trip(tmp_path, order):
    quats, translation, rest, joints = _smpl_motion()
    path = write_bvh(tmp_path / "dance.bvh", quats, translation, rest, fps=60, order=order)
    motion = read_bvh(path)
    assert motion.num_frames == 40 and motion.num_joints == 24 and motion.fps == pytest.approx(60, rel=1e-6)
    assert set(motion.names) == set(sk.JOINT_NAMES)
    assert motion.channels[0][:3] == ("Xposition", "Yposition", "Zposition")
    assert all(len(c) == 3 and c[0].endswith("rotation") for c in motion.channels[1:])
    assert len(motion.end_sites) == 5  # head, toes, hand tips
    np.testing.assert_allclose(_in_smpl_order(motion), joints, atol=1e-5)  # 6 decimals in the file
    # Local rotations survive too (up to sign).
    read_q = motion.rotations[:, [motion.names.index(n) for n in sk.JOINT_NAMES]]
    np.testing.assert_allclose(quaternion_to_matrix(read_q), quaternion_to_matrix(quats), atol=1e-6)


def test_reader_channel_orders_against_explicit_matrices(tmp_path):
    # Two joints; the child lists its rotations X Y Z, the root Z X Y; compare with hand-built matrices.
    text = """HIERARCHY
ROOT base
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT arm
  {
    OFFSET 1 0 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 0 2 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
1 2 3 0 0 0 0 0 0
0 0 0 30 40 50 10 20 70
"""
    (tmp_path / "two.bvh").write_text(text)
    motion = read_bvh(tmp_path / "two.bvh")
    assert motion.fps == 2.0
    pos = motion.world_positions(include_end_sites=True)  # (2, 3, 3)
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [2, 2, 3], [2, 4, 3]], atol=1e-12)

    def rot(axis, deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        i, j = (axis + 1) % 3, (axis + 2) % 3
        m = np.eye(3)
        m[i, i] = m[j, j] = c
        m[i, j], m[j, i] = -s, s
        return m

    root = rot(2, 30) @ rot(0, 40) @ rot(1, 50)
    child = rot(0, 10) @ rot(1, 20) @ rot(2, 70)
    arm = root @ [1, 0, 0]
    tip = arm + root @ child @ [0, 2, 0]
    np.testing.assert_allclose(pos[1], [[0, 0, 0], arm, tip], atol=1e-12)


def test_blender_imports_engine_bvh_at_the_same_joint_positions(tmp_path):
    bpy = pytest.importorskip("bpy")
    quats, translation, rest, joints = _smpl_motion(num_frames=30, seed=2)
    path = write_bvh(tmp_path / "dance.bvh", quats, translation, rest, fps=60)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    # Blender's defaults, spelled out: the file is y-up with -Z forward; BVH frame 0 lands on frame_start.
    result = bpy.ops.import_anim.bvh(filepath=str(path), target="ARMATURE", global_scale=1.0, frame_start=1,
                                     use_fps_scale=False, rotate_mode="NATIVE", axis_forward="-Z", axis_up="Y")
    assert result == {"FINISHED"}
    armature = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    expected = sk.yup_to_zup(joints)  # Blender is z-up
    try:
        for frame in (0, 1, 13, 29):
            bpy.context.scene.frame_set(1 + frame)
            heads = np.array([armature.matrix_world @ armature.pose.bones[name].head for name in sk.JOINT_NAMES])
            assert np.abs(heads - expected[frame]).max() < 1e-3, frame
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_blender_import_of_a_real_clip(tmp_path, aistpp_slices_dir):
    bpy = pytest.importorskip("bpy")
    csv = sorted(aistpp_slices_dir.glob("*.csv"))[0]
    joints = sk.zup_to_yup(np.loadtxt(csv, delimiter=",").reshape(-1, 24, 3))
    solution = solve_rotations(joints)
    fk, _ = sk.forward_kinematics_matrices(quaternion_to_matrix(solution.rotations), solution.translation,
                                           solution.rest_joints)
    path = write_bvh(tmp_path / "clip.bvh", solution.rotations, solution.translation, solution.rest_joints, 30)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(path), frame_start=1)
    armature = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    try:
        for frame in (0, 75, 149):
            bpy.context.scene.frame_set(1 + frame)
            heads = np.array([armature.matrix_world @ armature.pose.bones[name].head for name in sk.JOINT_NAMES])
            assert np.abs(heads - sk.yup_to_zup(fk[frame])).max() < 1e-3
            assert np.abs(heads - sk.yup_to_zup(joints[frame])).max() < 1e-3  # and the original clip
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_real_cmu_files_give_plausible_motion(data_dir):
    motion = read_bvh(data_dir / "cmu_131" / "131_01.bvh")
    assert motion.num_joints == 31 and motion.fps == pytest.approx(120, rel=1e-3)
    assert motion.names[0] == "Hips"
    pos = motion.world_positions(include_end_sites=True)  # (T, J+E, 3), metres, y-up
    height = np.median(pos[..., 1].max(axis=1) - pos[..., 1].min(axis=1))
    assert 1.2 < height < 2.0, height
    # Bone lengths stay constant through the take (FK is rigid), the hips move smoothly.
    bones = np.linalg.norm(pos[:, 1:31] - pos[:, motion.parents[1:]], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(bones[0], bones.shape), atol=1e-9)
    step = np.linalg.norm(np.diff(motion.root_translation, axis=0), axis=-1)
    assert step.max() < 0.05  # 6 m/s at 120 fps

    leader = read_bvh(data_dir / "cmu_salsa_duet" / "60_01.bvh")
    follower = read_bvh(data_dir / "cmu_salsa_duet" / "61_01.bvh")
    assert leader.num_joints == 43 and leader.num_frames == follower.num_frames
    assert leader.channels[1] == ("Zrotation", "Xrotation", "Yrotation")  # CMU's per-joint order
    hips = leader.root_translation
    assert np.linalg.norm(np.diff(hips, axis=0), axis=-1).max() < 0.05
    # The two dancers share the floor: their lowest points are at the same height, within a few cm.
    low = [m.world_positions(include_end_sites=True)[..., 1].min() for m in (leader, follower)]
    assert abs(low[0] - low[1]) < 0.05


def test_rotations_solved_from_real_joints_write_a_bvh_of_those_joints(tmp_path, aistpp_slices_dir):
    csv = sorted(aistpp_slices_dir.glob("*.csv"))[1]
    joints = sk.zup_to_yup(np.loadtxt(csv, delimiter=",").reshape(-1, 24, 3))
    solution = solve_rotations(joints.astype(np.float32))
    path = write_bvh(tmp_path / "dance.bvh", solution.rotations, solution.translation, solution.rest_joints, 30)
    motion = read_bvh(path)
    assert motion.fps == pytest.approx(30, rel=1e-6)
    np.testing.assert_allclose(_in_smpl_order(motion), joints, atol=1e-4)


_GOOD = """HIERARCHY
ROOT a
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT b
  {
    OFFSET 0 1 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 1 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.1
0 0 0 0 0 0 0 0 0
0 0 0 0 0 0 0 0 0
"""


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (_GOOD.replace("HIERARCHY", "HELLO"), "not a BVH file"),
        (_GOOD.split("MOTION")[0], "no 'MOTION'"),
        (_GOOD.replace("Frames: 2", "Frames: 3"), "declares 3 frames"),
        (_GOOD.replace("0 0 0 0 0 0 0 0 0\n", "0 0 0 0 0 0 0 0\n", 1), "line 19: 8 values"),
        (_GOOD.replace("0 0 0 0 0 0 0 0 0\n", "0 0 0 0 x 0 0 0 0\n", 1), "'x' is not a number"),
        (_GOOD.replace("3 Zrotation Xrotation Yrotation", "3 Zrotation Wrotation Yrotation"), "unknown channel"),
        (_GOOD.replace("OFFSET 0 1 0\n    CHANNELS", "OFFSET 0 one 0\n    CHANNELS"), "line 8: expected a number"),
        (_GOOD.replace("Frame Time: 0.1", "Frame Time: 0"), "Frame Time must be a positive"),
        (_GOOD.replace("  }\n}\nMOTION", "  }\nMOTION"), "ends inside the HIERARCHY"),
        (_GOOD.replace("Frames: 2", "Frames: 0").split("0 0 0 0")[0], "no motion frames"),
    ],
)
def test_malformed_files_raise_clear_errors(tmp_path, broken, message):
    path = tmp_path / "broken.bvh"
    path.write_text(broken)
    with pytest.raises(BvhFormatError, match=message):
        read_bvh(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(BvhError, match="cannot read"):
        read_bvh(tmp_path / "nope.bvh")


def test_write_is_atomic_and_validates(tmp_path):
    quats, translation, rest, _ = _smpl_motion(num_frames=5)
    path = tmp_path / "keep.bvh"
    path.write_text("old content")
    bad = quats.copy()
    bad[3, 4] = np.nan
    with pytest.raises(sk.InvalidMotionError):
        write_bvh(path, bad, translation, rest, fps=60)
    with pytest.raises(sk.InvalidMotionError):
        write_bvh(path, quats[:, :20], translation, rest, fps=60)
    from engine.errors import InvalidOptionError

    with pytest.raises(InvalidOptionError):
        write_bvh(path, quats, translation, rest, fps=0)
    with pytest.raises(BvhError, match="does not exist"):
        write_bvh(tmp_path / "missing" / "x.bvh", quats, translation, rest, fps=60)
    assert path.read_text() == "old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bvh"]  # no temp files left behind
    write_bvh(path, quats, translation, rest, fps=60)
    assert read_bvh(path).num_frames == 5
