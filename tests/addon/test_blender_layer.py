"""The SMPL armature and bulk keyframes on the real bpy module: pose == engine FK, one key per frame."""

from __future__ import annotations

import numpy as np
import pytest

from tests.addon.conftest import as_dance, needs_audio

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.usefixtures("fresh_scene")

from addon.blender import armature, compat, keyframes, scene  # noqa: E402
from addon.blender.errors import BlenderLayerError  # noqa: E402
from engine import skeleton  # noqa: E402


def _pose_heads(obj, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    return np.array([obj.matrix_world @ obj.pose.bones[n].head for n in skeleton.JOINT_NAMES])


def test_armature_rest_matches_joints_and_has_a_skinned_body():
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS)
    heads = np.array([obj.data.bones[n].head_local for n in skeleton.JOINT_NAMES])
    np.testing.assert_allclose(heads, skeleton.yup_to_zup(skeleton.REST_JOINTS), atol=1e-6)
    for j, name in enumerate(skeleton.JOINT_NAMES):
        parent = obj.data.bones[name].parent
        assert (parent.name if parent else None) == (
            skeleton.JOINT_NAMES[skeleton.PARENTS[j]] if j else None
        )
    body = [c for c in obj.children if c.type == "MESH"]
    assert len(body) == 1
    mesh = body[0]
    assert {g.name for g in mesh.vertex_groups} == set(skeleton.JOINT_NAMES)
    assert any(m.type == "ARMATURE" and m.object == obj for m in mesh.modifiers)
    # A smooth mannequin: closed capsules, shaded smooth, every vertex rigid to one bone.
    data = mesh.data
    assert all(p.use_smooth for p in data.polygons)
    assert all(len(v.groups) == 1 and v.groups[0].weight == 1.0 for v in data.vertices)
    edge_faces: dict[tuple[int, int], int] = {}
    for polygon in data.polygons:
        for key in polygon.edge_keys:
            edge_faces[key] = edge_faces.get(key, 0) + 1
    assert set(edge_faces.values()) == {2}  # closed surfaces: no hole to see into
    assert data.materials[0].name == armature.MANNEQUIN_MATERIAL
    # Its soles are where the engine puts the floor: the ankle's height above the sole below it.
    lowest = min(v.co.z for v in data.vertices)
    ankle = obj.data.bones["l_ankle"].head_local.z
    assert lowest == pytest.approx(ankle - skeleton.ANKLE_ABOVE_SOLE, abs=0.003)
    # Each piece is around its own bone: the bone nearest its middle is that bone or a neighbour of it.
    from mathutils import Vector

    for group in mesh.vertex_groups:
        bone = obj.data.bones[group.name]
        points = [v.co for v in data.vertices if v.groups[0].group == group.index]
        middle = sum(points, Vector()) / len(points)
        nearest = min(obj.data.bones, key=lambda b: _to_segment(middle, b))
        assert nearest in (bone, bone.parent, *bone.children), (group.name, nearest.name)


def _to_segment(p, bone) -> float:
    a, b = bone.head_local, bone.tail_local
    t = max(0.0, min(1.0, (p - a).dot(b - a) / max((b - a).length_squared, 1e-12)))
    return float((a + (b - a) * t - p).length)


def test_keyed_pose_matches_engine_fk(dance):
    quats, translation, joints = dance
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS)
    action = keyframes.apply_dance(obj, as_dance(quats, translation, 60), "my song")

    sc = bpy.context.scene
    assert (sc.frame_start, sc.frame_end) == (1, 120)
    assert scene.scene_fps(sc) == pytest.approx(60.0)
    assert obj.animation_data.action == action
    for frame in (1, 2, 37, 80, 120):
        heads = _pose_heads(obj, frame)
        err = np.abs(heads - skeleton.yup_to_zup(joints[frame - 1])).max()
        assert err < 1e-4, f"frame {frame}: max joint error {err:.2e} m"

    # The pelvis really travels (the root translation is keyed, not just rotations).
    assert np.linalg.norm(_pose_heads(obj, 120)[0] - _pose_heads(obj, 1)[0]) > 0.1


def test_set_pose_matches_engine_fk_and_the_keyed_frame(dance):
    quats, translation, joints = dance
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=False)
    keyframes.set_pose(obj, quats[36], translation[36], skeleton.REST_JOINTS)
    bpy.context.view_layer.update()
    posed = np.array([obj.matrix_world @ obj.pose.bones[n].head for n in skeleton.JOINT_NAMES])
    np.testing.assert_allclose(posed, skeleton.yup_to_zup(joints[36]), atol=1e-4)
    assert obj.animation_data is None  # no keys, no action
    # the same pose apply_dance keys at that frame
    keyframes.apply_dance(obj, as_dance(quats, translation, 60), "song")
    np.testing.assert_allclose(_pose_heads(obj, 37), posed, atol=1e-6)


def test_set_pose_without_translation_leaves_the_root_and_bad_input_changes_nothing(dance):
    quats, _, joints = dance
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=False)
    obj.pose.bones["pelvis"].location = (0.1, 0.2, 0.3)
    keyframes.set_pose(obj, quats[5])
    bpy.context.view_layer.update()
    assert tuple(obj.pose.bones["pelvis"].location) == pytest.approx((0.1, 0.2, 0.3))
    posed = np.array([obj.pose.bones[n].head for n in skeleton.JOINT_NAMES])  # armature space
    relative = skeleton.yup_to_zup(joints[5] - joints[5, :1])  # the pose's shape, about the pelvis
    np.testing.assert_allclose(posed - posed[:1], relative, atol=1e-4)

    before = [tuple(b.rotation_quaternion) for b in obj.pose.bones]
    bad = quats[5].copy()
    bad[3, 0] = np.nan
    with pytest.raises(BlenderLayerError, match="NaN"):
        keyframes.set_pose(obj, bad)
    with pytest.raises(BlenderLayerError, match="rest joints"):
        keyframes.set_pose(obj, quats[6], np.zeros(3))
    with pytest.raises(BlenderLayerError, match=r"\(24, 4\)"):
        keyframes.set_pose(obj, quats[6:8])
    obj.data.bones["l_knee"].name = "knee_left"
    with pytest.raises(BlenderLayerError, match="l_knee"):
        keyframes.set_pose(obj, quats[6])
    assert [tuple(b.rotation_quaternion) for b in obj.pose.bones] == before


def test_one_linear_key_per_frame_for_every_bone(dance):
    quats, translation, _ = dance
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=False)
    action = keyframes.apply_dance(obj, as_dance(quats, translation, 60), "song", frame_start=10)
    curves = compat.action_fcurves(action, obj)
    paths = {(fc.data_path, fc.array_index) for fc in curves}
    for name in skeleton.JOINT_NAMES:
        for i in range(4):
            assert (f'pose.bones["{name}"].rotation_quaternion', i) in paths
    for i in range(3):
        assert ('pose.bones["pelvis"].location', i) in paths
    assert len(curves) == 24 * 4 + 3
    for fc in curves:
        frames = np.empty(2 * len(fc.keyframe_points), dtype=np.float32)
        fc.keyframe_points.foreach_get("co", frames)
        np.testing.assert_array_equal(frames[0::2], np.arange(10, 130, dtype=np.float32))
        assert {k.interpolation for k in fc.keyframe_points} == {"LINEAR"}


def test_quaternion_keys_are_continuous(dance):
    quats, translation, _ = dance
    flipped = quats.copy()
    flipped[1::2] *= -1  # same rotations, alternating signs
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=False)
    action = keyframes.apply_dance(obj, as_dance(flipped, translation, 60), "song")
    curves = {(fc.data_path, fc.array_index): fc for fc in compat.action_fcurves(action, obj)}
    for name in skeleton.JOINT_NAMES:
        q = np.stack([
            [k.co[1] for k in curves[(f'pose.bones["{name}"].rotation_quaternion', i)].keyframe_points]
            for i in range(4)
        ], axis=1)
        assert np.all(np.sum(q[1:] * q[:-1], axis=1) >= 0.0), name


def test_new_action_never_overwrites_an_existing_one(dance):
    quats, translation, _ = dance
    existing = bpy.data.actions.new("my song")
    existing.use_fake_user = True
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=False)
    first = keyframes.apply_dance(obj, as_dance(quats, translation, 60), "my song")
    second = keyframes.apply_dance(obj, as_dance(quats[:50], translation[:50], 30), "my song")
    assert len({existing.name, first.name, second.name}) == 3
    assert existing.name == "my song"
    assert compat.action_fcurves(existing) == []  # untouched
    assert obj.animation_data.action == second
    assert int(first.frame_range[1]) == 120  # the first dance is still whole
    assert bpy.context.scene.render.fps == 30 and bpy.context.scene.frame_end == 50


def test_fractional_fps_is_exact():
    sc = bpy.context.scene
    scene.set_scene_fps(sc, 29.97)
    assert scene.scene_fps(sc) == pytest.approx(29.97, abs=1e-6)
    scene.set_scene_fps(sc, 60)
    assert (sc.render.fps, sc.render.fps_base) == (60, 1.0)


def test_bad_input_changes_nothing(dance):
    quats, translation, _ = dance
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=False)
    actions_before = len(bpy.data.actions)
    with pytest.raises(BlenderLayerError, match="translation"):
        keyframes.apply_dance(obj, as_dance(quats, translation[:-1], 60), "x")
    bad = quats.copy()
    bad[3, 5, 0] = np.nan
    with pytest.raises(BlenderLayerError, match="NaN"):
        keyframes.apply_dance(obj, as_dance(bad, translation, 60), "x")
    obj.data.bones["l_knee"].name = "knee_left"
    with pytest.raises(BlenderLayerError, match="l_knee"):
        keyframes.apply_dance(obj, as_dance(quats, translation, 60), "x")
    assert len(bpy.data.actions) == actions_before
    assert obj.animation_data is None


@needs_audio
def test_song_strip_sets_the_frame_range(song_wav):
    sc = bpy.context.scene
    strip = scene.load_song(sc, song_wav, fps=30)
    assert scene.song_strip(sc) == strip
    assert sc.render.fps == 30
    assert (sc.frame_start, sc.frame_end) == (1, 60)  # 2 s at 30 fps
    # Loading another song replaces the strip rather than stacking songs.
    scene.load_song(sc, song_wav, fps=60)
    assert len(compat.sequencer_strips(sc)) == 1
    assert sc.frame_end == 120
    with pytest.raises(BlenderLayerError, match="not found"):
        scene.load_song(sc, song_wav.with_name("missing.wav"))


def test_a_dance_result_is_keyed_under_its_song_name(dance):
    from engine.dance import Dance

    quats, translation, joints = dance
    result = Dance(joints=joints.astype(np.float32), fps=60, song_path="/music/Bolero (live).wav",
                   rotations=quats, translation=translation, rest_joints=skeleton.REST_JOINTS)
    obj = armature.create_smpl_armature("dancer", skeleton.REST_JOINTS, with_mesh=False)
    action = keyframes.apply_dance(obj, result)
    assert action.name == "Bolero (live)"
    np.testing.assert_allclose(_pose_heads(obj, 5), skeleton.yup_to_zup(joints[4]), atol=1e-4)
    with pytest.raises(BlenderLayerError, match="no joint rotations"):
        keyframes.apply_dance(obj, result.replace(rotations=None))
