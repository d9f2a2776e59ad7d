"""Bone-map presets and retargeting a dance onto a user's rig (Mixamo, Rigify deform bones, SMPL).

Rest-relative world-rotation transfer (docs/REFERENCE.md §5.4), in NumPy, written with ``foreach_set``:

1. Source world rotation deltas from the SMPL rest: ``W_j(t) = C G_j(t) C^T`` (G: FK global rotations).
2. Rest-pose differences (T-pose vs A-pose) are matched by construction: for each mapped target
   bone b, ``Q_b`` is the shortest-arc rotation taking the target's rest bone direction onto the
   source's rest direction of the same limb, so ``Q_b R_b_rest`` is "the target bone in the SMPL
   rest pose". The posed world rotation is ``R_b(t) = W_j(t) Q_b R_b_rest`` and the bone points
   where the SMPL limb points.
3. World rotations -> each bone's local basis in hierarchy order (unmapped bones keep their rest).
4. Root motion: the pelvis path scaled by the ratio of leg lengths, with the dance's floor (lowest
   foot joint) put on the rig's floor (its lowest rest foot joint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np

from .._engine import rotation, skeleton
from .errors import BlenderLayerError, RigMappingError
from .keyframes import action_name_for, continuous_quaternions, dance_motion, write_pose_action
from .scene import set_scene_fps

C = skeleton.YUP_TO_ZUP
JOINT_NAMES = skeleton.JOINT_NAMES


@dataclass(frozen=True)
class BoneMapPreset:
    """SMPL joint name -> candidate bone names in the target rig (first found wins).

    A candidate also matches a bone named ``<anything>:<candidate>`` (``mixamorig:Hips``,
    ``mixamorig1:Hips``), so namespaced rigs work without a preset per prefix.
    """

    name: str
    bones: dict[str, tuple[str, ...]]
    label: str = ""  # as the panel shows it
    required: tuple[str, ...] = field(default=())


# What every preset must find: root motion needs legs, and a dance without arms/head is not one.
_REQUIRED = (
    "pelvis", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
    "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "neck", "head",
)


def _sides(pattern: dict[str, str], left: str, right: str) -> dict[str, tuple[str, ...]]:
    """Expand {"hip": "{side}UpLeg"} into l_/r_ entries with the rig's side spelling."""
    out: dict[str, tuple[str, ...]] = {}
    for joint, bone in pattern.items():
        out[f"l_{joint}"] = (bone.format(side=left),)
        out[f"r_{joint}"] = (bone.format(side=right),)
    return out


MIXAMO = BoneMapPreset(
    name="mixamo",
    label="Mixamo",
    bones={
        "pelvis": ("Hips",), "spine1": ("Spine",), "spine2": ("Spine1",), "spine3": ("Spine2",),
        "neck": ("Neck",), "head": ("Head",),
        **_sides(
            {
                "collar": "{side}Shoulder", "shoulder": "{side}Arm", "elbow": "{side}ForeArm",
                "wrist": "{side}Hand", "hip": "{side}UpLeg", "knee": "{side}Leg", "ankle": "{side}Foot",
                "foot": "{side}ToeBase",
            },
            "Left", "Right",
        ),
    },
    required=_REQUIRED,
)

# Rigify's deform bones (the ones an exported game rig keeps). On a generated Rigify rig the DEF
# bones are driven by constraints, so key a deform-only copy (or the ORG/MCH rig) instead.
RIGIFY = BoneMapPreset(
    name="rigify",
    label="Rigify",
    bones={
        "pelvis": ("DEF-spine",), "spine1": ("DEF-spine.001",), "spine2": ("DEF-spine.002",),
        "spine3": ("DEF-spine.003",), "neck": ("DEF-spine.004",), "head": ("DEF-spine.006",),
        **_sides(
            {
                "collar": "DEF-shoulder{side}", "shoulder": "DEF-upper_arm{side}",
                "elbow": "DEF-forearm{side}", "wrist": "DEF-hand{side}", "hip": "DEF-thigh{side}",
                "knee": "DEF-shin{side}", "ankle": "DEF-foot{side}", "foot": "DEF-toe{side}",
            },
            ".L", ".R",
        ),
    },
    required=_REQUIRED,
)

_SMPLX_NAMES = {  # the names the SMPL-X Blender add-on uses
    "l_hip": "left_hip", "r_hip": "right_hip", "l_knee": "left_knee", "r_knee": "right_knee",
    "l_ankle": "left_ankle", "r_ankle": "right_ankle", "l_foot": "left_foot", "r_foot": "right_foot",
    "l_collar": "left_collar", "r_collar": "right_collar", "l_shoulder": "left_shoulder",
    "r_shoulder": "right_shoulder", "l_elbow": "left_elbow", "r_elbow": "right_elbow",
    "l_wrist": "left_wrist", "r_wrist": "right_wrist",
}
SMPL = BoneMapPreset(
    name="smpl",
    label="SMPL",
    bones={n: (n, _SMPLX_NAMES[n]) if n in _SMPLX_NAMES else (n,) for n in JOINT_NAMES},
    required=_REQUIRED,
)

PRESETS: dict[str, BoneMapPreset] = {p.name: p for p in (SMPL, MIXAMO, RIGIFY)}


def get_preset(preset: str | BoneMapPreset) -> BoneMapPreset:
    if isinstance(preset, BoneMapPreset):
        return preset
    try:
        return PRESETS[preset.lower()]
    except KeyError:
        raise RigMappingError(
            f"unknown bone-map preset {preset!r}: choose one of {', '.join(sorted(PRESETS))}"
        ) from None


def _find_bone(bone_names: Sequence[str], candidate: str) -> str | None:
    if candidate in bone_names:
        return candidate
    for name in bone_names:
        if name.rsplit(":", 1)[-1] == candidate:
            return name
    return None


def resolve_bone_map(target_obj: Any, preset: str | BoneMapPreset) -> dict[int, str]:
    """SMPL joint index -> bone name in ``target_obj`` for every preset entry the rig has.

    Raises ``RigMappingError`` naming the required bones the rig lacks.
    """
    preset = get_preset(preset)
    if getattr(target_obj, "type", None) != "ARMATURE":
        raise RigMappingError(f"{getattr(target_obj, 'name', target_obj)!r} is not an armature object")
    names = [b.name for b in target_obj.data.bones]
    mapping: dict[int, str] = {}
    missing: list[str] = []
    for joint, candidates in preset.bones.items():
        found = next((b for b in (_find_bone(names, c) for c in candidates) if b is not None), None)
        if found is not None:
            mapping[JOINT_NAMES.index(joint)] = found
        elif joint in preset.required:
            missing.append(candidates[0])
    if missing:
        raise RigMappingError(
            f"rig {target_obj.name!r} has no bones named {', '.join(missing)} "
            f"(needed by the {preset.name!r} bone map); pick another preset or rename the bones"
        )
    return mapping


# --- geometry helpers --------------------------------------------------------------------------------
def _depth(bone: Any) -> int:
    depth = 0
    while bone.parent is not None:
        bone, depth = bone.parent, depth + 1
    return depth


def _source_direction(j: int, mapping: dict[int, str], tgt_tail: np.ndarray, tgt_heads: dict[str, np.ndarray],
                      src_rest: np.ndarray) -> tuple[int, np.ndarray]:
    """Rest direction (z-up) of the SMPL limb matched to target bone of joint ``j``, and its end joint.

    Uses the mapped SMPL child whose target bone starts nearest to the target bone's tail; for
    leaves (or when no child is mapped) it continues the parent bone, as the SMPL armature does.
    """
    children = [k for k in skeleton.CHILDREN[j] if k in mapping]
    if children:
        k = min(children, key=lambda c: float(np.linalg.norm(tgt_heads[mapping[c]] - tgt_tail)))
        return k, src_rest[k] - src_rest[j]
    return -1, src_rest[j] - src_rest[skeleton.PARENTS[j]]


def _leg_length(points: dict[int, np.ndarray]) -> float:
    """Mean thigh + shin length over both legs from joint positions keyed by SMPL index."""
    total = 0.0
    for hip, knee, ankle in skeleton.LEGS:
        total += float(np.linalg.norm(points[knee] - points[hip]) + np.linalg.norm(points[ankle] - points[knee]))
    return total / 2.0


# --- main entry point --------------------------------------------------------------------------------
def retarget_to_rig(
    target_obj: Any,
    dance: Any,
    action_name: str | None,
    preset: str | BoneMapPreset = "mixamo",
    *,
    frame_start: int = 1,
    scene: Any = None,
) -> Any:
    """Key an ``engine.dance.Dance`` onto ``target_obj`` through the bone map ``preset`` as a new action
    (named ``action_name`` or after the song); returns it. Sets scene fps and frame range.

    Raises ``RigMappingError`` naming missing bones, or ``BlenderLayerError`` on bad input; in both
    cases nothing in the scene has changed.
    """
    rotations, translation, rest_joints = dance_motion(dance)
    mapping = resolve_bone_map(target_obj, preset)
    scene = scene or bpy.context.scene
    num_frames = rotations.shape[0]

    # Source (SMPL) in Blender world, z-up.
    local = rotation.quaternion_to_matrix(rotations)  # (T, 24, 3, 3)
    joints, glob = skeleton.forward_kinematics_matrices(local, translation, rest_joints)
    world_delta = np.einsum("ij,tbjk,lk->tbil", C, glob, C)  # (T, 24, 3, 3): C G C^T
    src_rest = rest_joints @ C.T  # (24, 3)
    src_joints = joints @ C.T  # (T, 24, 3)

    # Target rest, in armature space and world space.
    bones = target_obj.data.bones
    obj_matrix = np.array(target_obj.matrix_world)  # (4, 4)
    obj_rot = obj_matrix[:3, :3] / np.linalg.norm(obj_matrix[:3, :3], axis=0)  # unscaled rotation
    rest_orient = {b.name: np.array(b.matrix_local)[:3, :3] for b in bones}
    heads = {b.name: np.array(b.head_local) for b in bones}
    tails = {b.name: np.array(b.tail_local) for b in bones}

    def to_world(p: np.ndarray) -> np.ndarray:
        return obj_matrix[:3, :3] @ p + obj_matrix[:3, 3]

    heads_world = {n: to_world(h) for n, h in heads.items()}

    # Posed armature-space rotation of every mapped bone: O^T W_j Q_b O A_b.
    posed: dict[str, np.ndarray] = {}
    for j, bone_name in mapping.items():
        tgt_dir = obj_rot @ (tails[bone_name] - heads[bone_name])
        _, src_dir = _source_direction(
            j, mapping, to_world(tails[bone_name]), heads_world, src_rest
        )
        align = rotation.rotation_between(tgt_dir, src_dir)  # (3, 3) world
        world_rest = obj_rot @ rest_orient[bone_name]
        posed_world = world_delta[:, j] @ (align @ world_rest)  # (T, 3, 3)
        posed[bone_name] = obj_rot.T @ posed_world

    # Local bases in hierarchy order; unmapped ancestors of mapped bones stay at rest.
    needed: set[str] = set()
    for bone_name in mapping.values():
        bone = bones[bone_name]
        while bone is not None:
            needed.add(bone.name)
            bone = bone.parent
    order = sorted(needed, key=lambda n: _depth(bones[n]))
    basis: dict[str, np.ndarray] = {}
    for bone_name in order:
        bone = bones[bone_name]
        a_b = rest_orient[bone_name]
        inherits = bone.parent is not None and bone.use_inherit_rotation
        if bone_name not in posed:  # identity basis
            posed[bone_name] = (
                posed[bone.parent.name] @ rest_orient[bone.parent.name].T @ a_b if inherits
                else np.broadcast_to(a_b, (num_frames, 3, 3))
            )
            continue
        if inherits:
            parent_posed = posed[bone.parent.name]
            rel = np.swapaxes(parent_posed @ rest_orient[bone.parent.name].T @ a_b, -1, -2)
            basis[bone_name] = rel @ posed[bone_name]
        else:
            basis[bone_name] = a_b.T @ posed[bone_name]

    # Root motion: scaled by leg length, the dance's floor on the rig's floor, offset by the rig's place.
    src_points = {j: src_rest[j] for j in (1, 4, 7, 2, 5, 8)}
    tgt_points = {j: heads_world[mapping[j]] for j in (1, 4, 7, 2, 5, 8)}
    scale = _leg_length(tgt_points) / _leg_length(src_points)
    foot_joints = [j for j in skeleton.FOOT_JOINTS if j in mapping]
    src_floor = float(src_joints[:, skeleton.FOOT_JOINTS, 2].min())
    tgt_floor = min(float(heads_world[mapping[j]][2]) for j in foot_joints)
    pelvis_path = src_joints[:, 0]  # (T, 3)
    hips_world = np.empty_like(pelvis_path)
    hips_world[:, :2] = obj_matrix[:2, 3] + scale * pelvis_path[:, :2]
    hips_world[:, 2] = tgt_floor + scale * (pelvis_path[:, 2] - src_floor)
    root_name = mapping[0]
    hips_arm = (hips_world - obj_matrix[:3, 3]) @ np.linalg.inv(obj_matrix[:3, :3]).T  # (T, 3)
    # head = head_rest + A loc while the root's parents stay at rest (they are reset below).
    root_loc = (hips_arm - heads[root_name]) @ rest_orient[root_name]  # A^T (h - head), (T, 3)

    quats = {n: continuous_quaternions(rotation.matrix_to_quaternion(m)) for n, m in basis.items()}
    if not all(np.all(np.isfinite(q)) for q in quats.values()) or not np.all(np.isfinite(root_loc)):
        raise BlenderLayerError(f"rig {target_obj.name!r} has degenerate bones (zero length or scale)")

    # Only now touch the scene: put unmapped bones on the chain at rest, then write the action.
    for bone_name in order:
        if bone_name not in basis:
            pose_bone = target_obj.pose.bones[bone_name]
            pose_bone.location = (0.0, 0.0, 0.0)
            pose_bone.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
            pose_bone.rotation_euler = (0.0, 0.0, 0.0)
            pose_bone.scale = (1.0, 1.0, 1.0)
    for bone_name in basis:
        target_obj.pose.bones[bone_name].scale = (1.0, 1.0, 1.0)
    action = write_pose_action(
        target_obj, action_name or action_name_for(dance), quats, root_bone=root_name, root_locations=root_loc, frame_start=frame_start
    )
    set_scene_fps(scene, dance.fps)
    scene.frame_start = frame_start
    scene.frame_end = frame_start + num_frames - 1
    return action
