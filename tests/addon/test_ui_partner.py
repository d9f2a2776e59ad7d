"""'Dance with this partner' on the real bpy module: a Mixamo-like rig with a keyed dance gets a follower."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon.blender import rigmap  # noqa: E402
from tests.addon.conftest import as_dance  # noqa: E402
from tests.addon.test_blender_rigmap import make_mixamo_rig  # noqa: E402
from tests.addon.test_ui_generate import scene_state, undo  # noqa: E402


@pytest.fixture
def duo_scene(ui_scene, enabled, duo_model_dir):
    enabled.model_dir = str(duo_model_dir)  # a model with a follower
    return ui_scene


def _world_pelvis(obj, bone: str) -> np.ndarray:
    return np.array(obj.matrix_world @ obj.pose.bones[bone].head)


def test_a_mixamo_rig_gets_a_follower_that_dances_beside_it(duo_scene, dance_factory):
    scene = duo_scene
    rig, _ = make_mixamo_rig()
    quats, translation, _ = dance_factory(240)
    rigmap.retarget_to_rig(rig, as_dance(quats, translation, 60), "lead", "mixamo", scene=scene)
    scene.dance.preset = "Mixamo"
    bpy.context.view_layer.objects.active = rig
    bpy.ops.ed.undo_push(message="before the partner")
    before = scene_state(scene)

    assert bpy.ops.dance.dance_with_partner("EXEC_DEFAULT", True) == {"FINISHED"}
    partner = bpy.data.objects["mixamo partner"]
    assert partner.type == "ARMATURE" and [c.type for c in partner.children] == ["MESH"]  # with a body
    assert partner.children[0].data.materials[0].name == "DancePartner"  # in its own colour
    lead_range = tuple(int(v) for v in rig.animation_data.action.frame_range)
    follow_range = tuple(int(v) for v in partner.animation_data.action.frame_range)
    assert follow_range[0] == lead_range[0] and abs(follow_range[1] - lead_range[1]) < 8  # whole tokens
    assert (scene.frame_start, scene.frame_end) == before["frames"][:2]  # the scene's range is kept
    distances = []
    for frame in range(follow_range[0], follow_range[1], 20):
        scene.frame_set(frame)
        gap = _world_pelvis(partner, "pelvis") - _world_pelvis(rig, "mixamorig:Hips")
        distances.append(float(np.hypot(gap[0], gap[1])))  # on the floor (z up)
    assert 0.05 < np.median(distances) < 3.0  # beside the leader, within the placement grid's reach

    undo()
    assert scene_state(bpy.context.scene) == before
    assert "mixamo partner" not in bpy.data.objects


def test_what_cannot_be_a_leader_is_named_and_nothing_changes(duo_scene):
    scene = duo_scene
    data = bpy.data.armatures.new("still")
    still = bpy.data.objects.new("still", data)
    scene.collection.objects.link(still)
    bpy.context.view_layer.objects.active = still
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="has no action: key a dance on it first"):
        bpy.ops.dance.dance_with_partner("EXEC_DEFAULT")
    rig, _ = make_mixamo_rig()
    bpy.context.view_layer.objects.active = rig
    rig.animation_data_create().action = bpy.data.actions.new("held")
    scene.render.fps = 25
    with pytest.raises(RuntimeError, match="runs at 25 fps"):
        bpy.ops.dance.dance_with_partner("EXEC_DEFAULT")
    assert [o for o in scene_state(scene)["objects"] if "partner" in o] == []
    assert scene_state(scene)["actions"] == sorted([*before["actions"], "held"])
