"""Retargeting onto a Mixamo-named rig in A-pose with other proportions, on the real bpy module."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.addon.conftest import as_dance

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.usefixtures("fresh_scene")

from addon.blender import armature, rigmap  # noqa: E402
from addon.blender.errors import DanceError, RigMappingError  # noqa: E402
from engine import skeleton  # noqa: E402

J = {n: i for i, n in enumerate(skeleton.JOINT_NAMES)}

# Mixamo bone -> (SMPL joint at its head, SMPL joint or extra point at its tail, parent bone).
MIXAMO_BONES = {
    "Hips": ("pelvis", "spine1", None),
    "Spine": ("spine1", "spine2", "Hips"),
    "Spine1": ("spine2", "spine3", "Spine"),
    "Spine2": ("spine3", "neck", "Spine1"),
    "Neck": ("neck", "head", "Spine2"),
    "Head": ("head", "head_top", "Neck"),
    "HeadTop_End": ("head_top", "head_top2", "Head"),
}
for side, s in (("Left", "l"), ("Right", "r")):
    MIXAMO_BONES.update({
        f"{side}Shoulder": (f"{s}_collar", f"{s}_shoulder", "Spine2"),
        f"{side}Arm": (f"{s}_shoulder", f"{s}_elbow", f"{side}Shoulder"),
        f"{side}ForeArm": (f"{s}_elbow", f"{s}_wrist", f"{side}Arm"),
        f"{side}Hand": (f"{s}_wrist", f"{s}_hand", f"{side}ForeArm"),
        f"{side}HandIndex1": (f"{s}_hand", f"{s}_finger", f"{side}Hand"),  # unmapped
        f"{side}UpLeg": (f"{s}_hip", f"{s}_knee", "Hips"),
        f"{side}Leg": (f"{s}_knee", f"{s}_ankle", f"{side}UpLeg"),
        f"{side}Foot": (f"{s}_ankle", f"{s}_foot", f"{side}Leg"),
        f"{side}ToeBase": (f"{s}_foot", f"{s}_toe_end", f"{side}Foot"),
    })
MAPPED_NON_LEAF = {  # Mixamo bone -> (SMPL joint, SMPL child its tail points at)
    "Hips": ("pelvis", "spine1"), "Spine": ("spine1", "spine2"), "Spine1": ("spine2", "spine3"),
    "Spine2": ("spine3", "neck"), "Neck": ("neck", "head"),
    **{f"{side}{b}": (f"{s}_{j}", f"{s}_{k}")
       for side, s in (("Left", "l"), ("Right", "r"))
       for b, j, k in (("Shoulder", "collar", "shoulder"), ("Arm", "shoulder", "elbow"),
                       ("ForeArm", "elbow", "wrist"), ("UpLeg", "hip", "knee"), ("Leg", "knee", "ankle"),
                       ("Foot", "ankle", "foot"))},
}


def _a_pose_points() -> dict[str, np.ndarray]:
    """Joint positions (y-up metres) of a rig with other proportions than SMPL, arms down 45 deg."""
    rest = skeleton.REST_JOINTS.copy()
    pts = {n: rest[i].copy() for n, i in J.items()}
    # Longer legs, shorter arms, taller torso: scale each bone about its parent joint, root outwards.
    scale = {"l_knee": 1.2, "r_knee": 1.2, "l_ankle": 1.15, "r_ankle": 1.15, "l_elbow": 0.9,
             "r_elbow": 0.9, "l_wrist": 0.85, "r_wrist": 0.85, "spine2": 1.2, "spine3": 1.1, "neck": 1.1}
    offsets = skeleton.bone_offsets(rest)
    for j in range(1, 24):
        name = skeleton.JOINT_NAMES[j]
        pts[name] = pts[skeleton.JOINT_NAMES[skeleton.PARENTS[j]]] + offsets[j] * scale.get(name, 1.0)
    # A-pose: rotate each arm down 45 degrees about the forward axis (y-up: z) at the shoulder.
    for s, sign in (("l", -1.0), ("r", 1.0)):
        c, si = math.cos(sign * math.pi / 4), math.sin(sign * math.pi / 4)
        rot = np.array([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]])
        pivot = pts[f"{s}_shoulder"].copy()
        for joint in ("elbow", "wrist", "hand"):
            pts[f"{s}_{joint}"] = pivot + rot @ (pts[f"{s}_{joint}"] - pivot)
        pts[f"{s}_finger"] = pts[f"{s}_hand"] + (pts[f"{s}_hand"] - pts[f"{s}_wrist"])
        pts[f"{s}_toe_end"] = pts[f"{s}_foot"] + np.array([0.0, 0.0, 0.08])
    pts["head_top"] = pts["head"] + np.array([0.0, 0.15, 0.0])
    pts["head_top2"] = pts["head_top"] + np.array([0.0, 0.05, 0.0])
    return pts


def make_mixamo_rig(prefix: str = "mixamorig:", skip: tuple[str, ...] = ()):
    """A Mixamo-like import: y-up centimetre bones, object rotated 90 deg about X and scaled 0.01."""
    pts = _a_pose_points()
    data = bpy.data.armatures.new("mixamo")
    obj = bpy.data.objects.new("mixamo", data)
    bpy.context.scene.collection.objects.link(obj)
    obj.rotation_euler = (math.pi / 2, 0.0, 0.0)
    obj.scale = (0.01, 0.01, 0.01)
    obj.location = (2.0, 0.0, 0.0)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    rng = np.random.default_rng(3)
    edit = {}
    for bone, (head, tail, parent) in MIXAMO_BONES.items():
        if bone in skip:
            continue
        eb = data.edit_bones.new(prefix + bone)
        eb.head = (pts[head] * 100).tolist()
        eb.tail = (pts[tail] * 100).tolist()
        eb.roll = float(rng.uniform(-math.pi, math.pi))  # rolls must not matter
        if parent is not None and parent in edit:
            eb.parent = edit[parent]
        edit[bone] = eb
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj, pts


def _leg(points) -> float:
    return np.mean([np.linalg.norm(points[f"{s}_knee"] - points[f"{s}_hip"])
                    + np.linalg.norm(points[f"{s}_ankle"] - points[f"{s}_knee"]) for s in "lr"])


@pytest.mark.parametrize("prefix", ["mixamorig:", ""])
def test_mixamo_a_pose_rig_follows_the_bone_directions(dance, prefix):
    quats, translation, joints = dance
    rig, pts = make_mixamo_rig(prefix)
    action = rigmap.retarget_to_rig(rig, as_dance(quats, translation, 60), "song", "mixamo")
    assert rig.animation_data.action == action
    src = skeleton.yup_to_zup(joints)  # (T, 24, 3)
    worst = 0.0
    for frame in (1, 45, 120):
        bpy.context.scene.frame_set(frame)
        for bone, (j, k) in MAPPED_NON_LEAF.items():
            pb = rig.pose.bones[prefix + bone]
            got = np.array(rig.matrix_world @ pb.tail) - np.array(rig.matrix_world @ pb.head)
            want = src[frame - 1, J[k]] - src[frame - 1, J[j]]
            cos = np.dot(got, want) / np.linalg.norm(got) / np.linalg.norm(want)
            worst = max(worst, math.degrees(math.acos(min(1.0, cos))))
    assert worst < 2.0, f"worst bone direction error {worst:.3f} deg"


def test_root_motion_is_scaled_by_leg_length(dance):
    quats, translation, joints = dance
    rig, pts = make_mixamo_rig()
    rigmap.retarget_to_rig(rig, as_dance(quats, translation, 60), "song", "mixamo")
    scale = _leg(pts) / _leg({n: skeleton.REST_JOINTS[i] for n, i in J.items()})
    assert scale > 1.1  # the test rig has longer legs
    hips = []
    for frame in (1, 120):
        bpy.context.scene.frame_set(frame)
        hips.append(np.array(rig.matrix_world @ rig.pose.bones["mixamorig:Hips"].head))
    src = skeleton.yup_to_zup(joints[[0, 119], 0])
    np.testing.assert_allclose(hips[1] - hips[0], scale * (src[1] - src[0]), atol=1e-4)


def test_smpl_preset_onto_another_smpl_armature_reproduces_fk(dance):
    quats, translation, joints = dance
    target = armature.create_smpl_armature("other", skeleton.REST_JOINTS, with_mesh=False)
    rigmap.retarget_to_rig(target, as_dance(quats, translation, 60), "song", "smpl")
    for frame in (1, 60):
        bpy.context.scene.frame_set(frame)
        heads = np.array([target.pose.bones[n].head for n in skeleton.JOINT_NAMES])
        src = skeleton.yup_to_zup(joints[frame - 1])
        # Same skeleton: same shape; the root is placed by the floor rule, so compare root-relative.
        np.testing.assert_allclose(heads - heads[0], src - src[0], atol=1e-4)


def test_missing_bones_are_named_and_nothing_changes(dance):
    quats, translation, _ = dance
    rig, _ = make_mixamo_rig(skip=("LeftForeArm", "RightUpLeg"))
    actions = len(bpy.data.actions)
    with pytest.raises(RigMappingError) as info:
        rigmap.retarget_to_rig(rig, as_dance(quats, translation, 60), "song", "mixamo")
    assert isinstance(info.value, DanceError)
    assert "LeftForeArm" in str(info.value) and "RightUpLeg" in str(info.value)
    assert len(bpy.data.actions) == actions and rig.animation_data is None
    with pytest.raises(RigMappingError, match="unknown bone-map preset"):
        rigmap.retarget_to_rig(rig, as_dance(quats, translation, 60), "song", "daz")


def test_rigify_preset_resolves_deform_bones():
    data = bpy.data.armatures.new("rig")
    obj = bpy.data.objects.new("rig", data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    names = [n for names in rigmap.RIGIFY.bones.values() for n in names]
    for i, name in enumerate(names):
        eb = data.edit_bones.new(name)
        eb.head, eb.tail = (i, 0, 0), (i, 0, 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    mapping = rigmap.resolve_bone_map(obj, "rigify")
    assert mapping[J["l_knee"]] == "DEF-shin.L" and mapping[J["r_wrist"]] == "DEF-hand.R"
    assert len(mapping) == 22
