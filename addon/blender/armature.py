"""The SMPL armature (24 bones, z-up) and a simple body mesh that renders.

Bone j spans joint j (head) to one child joint (tail), parented like SMPL, named after the engine's
``JOINT_NAMES``, every bone with roll 0 and unconnected (only the pelvis is translated by keys, but
unconnected bones keep head positions exact whatever the tails). Bones never render, so a box per
bone (weighted 1.0 to its bone, Armature modifier) makes a figure Workbench/EEVEE/Cycles can show.
"""

from __future__ import annotations

from typing import Any, cast

import bpy
import numpy as np

from .._engine import skeleton
from .errors import BlenderLayerError
from .scene import context_scene, context_view_layer

JOINT_NAMES = skeleton.JOINT_NAMES
PARENTS = skeleton.PARENTS
C = skeleton.YUP_TO_ZUP  # y-up -> z-up

# Which child the bone points at where a joint has several (nicer display than the first child).
_DISPLAY_CHILD = {"pelvis": "spine1", "spine3": "neck"}

# Half-width of each bone's box as a fraction of its length, and clamps (metres).
_TORSO = {"pelvis", "spine1", "spine2", "spine3"}


def display_child(j: int) -> int | None:
    """Index of the child joint bone ``j`` points at, or None for leaves (head, feet, hands)."""
    name = JOINT_NAMES[j]
    if name in _DISPLAY_CHILD:
        return JOINT_NAMES.index(_DISPLAY_CHILD[name])
    children = skeleton.CHILDREN[j]
    return children[0] if children else None


def bone_tails(rest_joints: np.ndarray) -> np.ndarray:
    """Tail of every bone (24, 3) in the joints' own frame: the display child, or for leaves the
    parent->joint direction continued for half the parent bone (at least 5 cm)."""
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    tails = np.empty_like(rest_joints)
    for j in range(len(JOINT_NAMES)):
        child = display_child(j)
        if child is not None:
            tails[j] = rest_joints[child]
            continue
        along = rest_joints[j] - rest_joints[PARENTS[j]]
        length = float(np.linalg.norm(along))
        tails[j] = rest_joints[j] + along / max(length, 1e-9) * max(0.5 * length, 0.05)
    return tails


def _check_rest(rest_joints: np.ndarray) -> np.ndarray:
    rest = np.asarray(rest_joints, dtype=np.float64)
    if rest.shape != (len(JOINT_NAMES), 3) or not np.all(np.isfinite(rest)):
        raise BlenderLayerError(f"rest joints must be a finite (24, 3) array, got shape {rest.shape}")
    lengths = skeleton.bone_lengths(rest)
    if np.any(lengths < 1e-4):
        short = [JOINT_NAMES[j + 1] for j in np.nonzero(lengths < 1e-4)[0]]
        raise BlenderLayerError(f"rest skeleton has zero-length bones ending at: {', '.join(short)}")
    return rest


def create_smpl_armature(
    name: str, rest_joints: np.ndarray, *, with_mesh: bool = True, collection: Any = None
) -> Any:
    """Create an SMPL armature object from rest joints (24, 3) y-up metres; returns the object.

    The armature object sits at the origin with identity transform, so armature space is world space.
    With ``with_mesh`` a child mesh "<name>_body" (a box per bone, skinned 1.0) is added too.
    """
    rest = _check_rest(rest_joints)
    heads = rest @ C.T  # (24, 3) z-up
    tails = bone_tails(rest) @ C.T
    collection = collection or context_scene().collection
    view_layer = context_view_layer()  # checked before anything is created

    arm_data = bpy.data.armatures.new(name)
    arm_obj = bpy.data.objects.new(name, arm_data)
    collection.objects.link(arm_obj)
    arm_data.display_type = "STICK"

    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = arm_obj
    arm_obj.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit_bones: list[Any] = []
        for j, bone_name in enumerate(JOINT_NAMES):
            eb = arm_data.edit_bones.new(bone_name)
            eb.head = heads[j].tolist()
            eb.tail = tails[j].tolist()
            eb.roll = 0.0
            eb.use_connect = False
            if PARENTS[j] >= 0:
                eb.parent = edit_bones[PARENTS[j]]
            edit_bones.append(eb)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")

    pose = arm_obj.pose
    if pose is None:  # Blender gives every armature object a pose; guard against a broken object anyway
        raise BlenderLayerError(f"the new armature {arm_obj.name!r} has no pose, so its bones cannot be keyed")
    for pose_bone in pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    if with_mesh:
        create_body_mesh(arm_obj, f"{name}_body", collection=collection)
    return arm_obj


def _box_half_width(bone_name: str, length: float) -> float:
    if bone_name in _TORSO:
        return 0.07
    if bone_name == "head":
        return 0.08
    return float(np.clip(0.2 * length, 0.02, 0.055))


def create_body_mesh(arm_obj: Any, name: str, *, collection: Any = None) -> Any:
    """A tapered box per bone in the bone's rest frame, each weighted 1.0 to its bone."""
    collection = collection or context_scene().collection
    # Box corners in the bone's local frame (x, y along the bone, z), scaled per bone below.
    unit = np.array(
        [[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1], [-1, 1, -1], [1, 1, -1], [1, 1, 1], [-1, 1, 1]],
        dtype=np.float64,
    )
    box_faces = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]

    verts: list[np.ndarray] = []
    faces: list[tuple[int, ...]] = []
    groups: list[tuple[str, range]] = []
    for bone in arm_obj.data.bones:
        rest = np.array(bone.matrix_local)  # (4, 4) armature space
        length = float(bone.length)
        half = _box_half_width(bone.name, length)
        local = unit.copy()
        local[:, 0] *= half
        local[:, 2] *= half
        local[4:, [0, 2]] *= 0.75  # taper towards the tail
        local[:, 1] *= length
        world = local @ rest[:3, :3].T + rest[:3, 3]  # (8, 3)
        start = 8 * len(groups)
        verts.append(world)
        faces.extend(tuple(start + i for i in f) for f in box_faces)
        groups.append((bone.name, range(start, start + 8)))

    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.concatenate(verts).tolist(), [], faces)
    mesh.update()
    mesh_obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(mesh_obj)
    mesh_obj.parent = arm_obj
    for bone_name, indices in groups:
        group = mesh_obj.vertex_groups.new(name=bone_name)
        group.add(list(indices), 1.0, "REPLACE")
    # modifiers.new is typed as the base Modifier; type "ARMATURE" makes an ArmatureModifier.
    modifier = cast(bpy.types.ArmatureModifier, mesh_obj.modifiers.new("Armature", "ARMATURE"))
    modifier.object = arm_obj
    return mesh_obj
