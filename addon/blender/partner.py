"""A dance partner in Blender: read a leader's dance off any armature, add the follower beside him.

The leader is an SMPL armature the add-on made or a user's rig through a bone map (``rigmap``): his
world joint positions are sampled frame by frame (a joint the map leaves out takes the tail of its
parent's bone: a Mixamo hand is the end of its hand bone), turned to the engine's y-up and scaled to
an SMPL-sized body by leg length, since the model knows SMPL-sized dancers. The follower comes back in
that frame and is added as a new SMPL armature with a body, scaled back to the leader's size and
keyed from the leader's first frame. Nothing in the scene changes until the follower is added.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._engine import skeleton
from . import armature, compat, keyframes, rigmap
from .errors import BlenderLayerError

PARTNER_MATERIAL = "DancePartner"
PARTNER_COLOR = (0.55, 0.66, 0.80, 1.0)  # a cool tone beside the light-wood leader


def _leg_length(joints: np.ndarray) -> float:
    """Hip -> knee -> ankle (metres), averaged over both legs and the frames."""
    return float(np.mean([np.linalg.norm(joints[:, knee] - joints[:, hip], axis=-1)
                          + np.linalg.norm(joints[:, ankle] - joints[:, knee], axis=-1)
                          for hip, knee, ankle in skeleton.LEGS]))


def leader_joints(scene: Any, obj: Any, preset: str, frames: range) -> tuple[np.ndarray, float]:
    """(world joints (T, 24, 3) y-up of an SMPL-sized body, the scale that made it SMPL-sized) of the
    armature ``obj`` at ``frames``. The scene is back on its current frame afterwards."""
    mapping = rigmap.resolve_bone_map(obj, preset)
    order = list(range(len(skeleton.JOINT_NAMES)))
    for j in order[1:]:  # a left-out joint: the tail of its parent's bone
        if j not in mapping and skeleton.PARENTS[j] not in mapping:
            raise BlenderLayerError(f"the {preset!r} bone map of {obj.name!r} has neither "
                                    f"{skeleton.JOINT_NAMES[j]} nor its parent joint")
    if len(frames) < 16:
        raise BlenderLayerError(f"{obj.name!r}: a partner needs a dance of at least 16 frames, the range has "
                                f"{len(frames)}")
    saved = scene.frame_current
    points = np.empty((len(frames), len(order), 3))
    try:
        for i, frame in enumerate(frames):
            scene.frame_set(frame)
            world = obj.matrix_world
            for j in order:
                if j in mapping:
                    points[i, j] = world @ obj.pose.bones[mapping[j]].head
                else:
                    points[i, j] = world @ obj.pose.bones[mapping[skeleton.PARENTS[j]]].tail
    finally:
        scene.frame_set(saved)
    joints = skeleton.zup_to_yup(points)
    leg = _leg_length(joints)
    if not leg > 1e-6:
        raise BlenderLayerError(f"{obj.name!r} has legs of zero length: not a body to dance with")
    scale = _leg_length(skeleton.REST_JOINTS[None]) / leg
    return joints * scale, scale


def add_follower(scene: Any, dance: Any, name: str, scale: float, frame_start: int) -> Any:
    """The follower ``dance`` (the engine's frame, SMPL-sized) as a new SMPL armature with a body (in its
    own colour), at the leader's size (object scale ``1 / scale``), keyed from ``frame_start``. The scene's frame range and
    rate stay as they are (the follower was made at the scene's rate)."""
    obj = armature.create_smpl_armature(name, dance.rest_joints, with_mesh=True, collection=scene.collection)
    for body in (c for c in obj.children if c.type == "MESH"):  # told apart from the leader at a glance
        body.data.materials[0] = compat.plain_material(PARTNER_MATERIAL, PARTNER_COLOR, roughness=0.55)
    kept = (scene.frame_start, scene.frame_end)
    keyframes.apply_dance(obj, dance, name, frame_start=frame_start, scene=scene)
    scene.frame_start, scene.frame_end = kept
    obj.scale = (1.0 / scale,) * 3
    return obj
