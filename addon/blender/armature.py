"""The SMPL armature (24 bones, z-up) and a smooth mannequin body that renders.

Bone j spans joint j (head) to one child joint (tail), parented like SMPL, named after the engine's
``JOINT_NAMES``, every bone with roll 0 and unconnected (only the pelvis is translated by keys, but
unconnected bones keep head positions exact whatever the tails). Bones never render, so a capsule per
bone (weighted 1.0 to its bone, Armature modifier) makes a figure Workbench/EEVEE/Cycles can show.
"""

from __future__ import annotations

from typing import Any, cast

import bpy
import numpy as np

from .._engine import skeleton
from . import compat
from .errors import BlenderLayerError
from .scene import context_scene, context_view_layer

JOINT_NAMES = skeleton.JOINT_NAMES
PARENTS = skeleton.PARENTS
C = skeleton.YUP_TO_ZUP  # y-up -> z-up

# Which child the bone points at where a joint has several (nicer display than the first child).
_DISPLAY_CHILD = {"pelvis": "spine1", "spine3": "neck"}

MANNEQUIN_MATERIAL = "DanceMannequin"
MANNEQUIN_COLOR = (0.86, 0.62, 0.42, 1.0)  # light wood


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


# The mannequin: one smooth capsule per bone (rounded ends overlap at the joints, as on an artist's
# wooden mannequin), rigid to its bone. Each piece runs between two points of the rest pose in armature
# space (z up, the dancer facing -y), given as (joint, offset in metres), with its radius at each end and
# how flat its cross-section is along ``_FLAT`` (torso front-to-back, hands palm-down). A one-number
# offset continues the line from the joint's parent through the joint by that many metres.
_UP, _DOWN, _BACK, _FRONT = (0.0, 0.0, 1.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0)
_Piece = tuple[str, tuple[str, tuple[float, ...]], tuple[str, tuple[float, ...]], float, float, float]


def _limb(side: str) -> list[_Piece]:
    sole = -skeleton.ANKLE_ABOVE_SOLE  # the sole under the ankle, where the engine puts the floor
    toe_sole = -skeleton.TOE_ABOVE_SOLE
    return [
        (f"{side}_hip", (f"{side}_hip", (0, 0, 0)), (f"{side}_knee", (0, 0, 0)), 0.080, 0.056, 1.0),
        (f"{side}_knee", (f"{side}_knee", (0, 0, 0)), (f"{side}_ankle", (0, 0, 0)), 0.052, 0.040, 1.0),
        # the foot: from the heel behind the ankle to the ball and the toes, its underside on the sole
        (f"{side}_ankle", (f"{side}_ankle", (0, 0.035, sole + 0.038)), (f"{side}_foot", (0, 0, toe_sole + 0.030)),
         0.038, 0.030, 1.0),
        (f"{side}_foot", (f"{side}_foot", (0, 0, toe_sole + 0.028)), (f"{side}_foot", (0, -0.045, toe_sole + 0.022)),
         0.028, 0.022, 1.0),
        (f"{side}_collar", (f"{side}_collar", (0, 0, 0)), (f"{side}_shoulder", (0, 0, 0)), 0.055, 0.055, 1.0),
        (f"{side}_shoulder", (f"{side}_shoulder", (0, 0, 0)), (f"{side}_elbow", (0, 0, 0)), 0.050, 0.040, 1.0),
        (f"{side}_elbow", (f"{side}_elbow", (0, 0, 0)), (f"{side}_wrist", (0, 0, 0)), 0.038, 0.030, 1.0),
        (f"{side}_wrist", (f"{side}_wrist", (0, 0, 0)), (f"{side}_hand", (0, 0, 0)), 0.032, 0.040, 0.5),
        # the fingers: 7 cm on from the hand joint, along the forearm's line (wrist -> hand)
        (f"{side}_hand", (f"{side}_hand", (0, 0, 0)), (f"{side}_hand", (0.07,)), 0.036, 0.026, 0.5),
    ]


_PIECES: list[_Piece] = [
    ("pelvis", ("pelvis", (0, 0, -0.03)), ("spine1", (0, 0, 0)), 0.125, 0.118, 0.72),
    ("spine1", ("spine1", (0, 0, 0)), ("spine2", (0, 0, 0)), 0.118, 0.122, 0.70),
    ("spine2", ("spine2", (0, 0, 0)), ("spine3", (0, 0, 0)), 0.128, 0.135, 0.72),
    ("spine3", ("spine3", (0, 0, 0)), ("neck", (0, 0, -0.04)), 0.135, 0.080, 0.72),
    ("neck", ("neck", (0, 0, 0)), ("head", (0, 0, 0)), 0.050, 0.048, 1.0),
    ("head", ("head", (0, -0.01, 0.07)), ("head", (0, -0.015, 0.13)), 0.088, 0.092, 0.92),
    *_limb("l"),
    *_limb("r"),
]
_FLAT = {"hand": _UP, "wrist": _UP}  # flattened along z (palm down); everything else front-to-back


def _capsule(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, flat: float, flat_axis: np.ndarray,
             segments: int = 16, cap_rings: int = 4) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A closed capsule from p0 to p1 (hemispherical ends of radius r0, r1): vertices and faces
    (quads, triangle fans at the poles); the cross-section is scaled by ``flat`` along ``flat_axis``."""
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    u = axis / length if length > 1e-9 else np.array([0.0, 0.0, 1.0])
    a = flat_axis - np.dot(flat_axis, u) * u
    if np.linalg.norm(a) < 1e-6:  # the flat axis runs along the piece: any perpendicular will do
        a = np.cross(u, [1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.cross(u, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(u, a)
    # Profile (distance along u, radius) from the p0 pole to the p1 pole.
    angles = np.linspace(-np.pi / 2, 0.0, cap_rings + 1)[1:]
    profile = [(r0 * np.sin(t), r0 * np.cos(t)) for t in angles]
    profile += [(length + r1 * np.sin(-t), r1 * np.cos(t)) for t in angles[::-1]]
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    ring_dirs = np.cos(theta)[:, None] * a * flat + np.sin(theta)[:, None] * b  # (segments, 3)
    verts = [p0 - u * r0]
    for along, radius in profile:
        verts.extend(p0 + u * along + radius * ring_dirs)
    verts.append(p1 + u * r1)
    faces: list[tuple[int, ...]] = []
    last = len(verts) - 1
    for k in range(segments):
        k1 = (k + 1) % segments
        faces.append((0, 1 + k1, 1 + k))
        for ring in range(len(profile) - 1):
            r_a, r_b = 1 + ring * segments, 1 + (ring + 1) * segments
            faces.append((r_a + k, r_a + k1, r_b + k1, r_b + k))
        top = 1 + (len(profile) - 1) * segments
        faces.append((top + k, top + k1, last))
    return np.asarray(verts), faces


def _point(arm_obj: Any, heads: dict[str, np.ndarray], joint: str, offset: tuple[float, ...]) -> np.ndarray:
    if len(offset) == 1:
        parent = arm_obj.data.bones[joint].parent
        along = heads[joint] - heads[parent.name]
        return heads[joint] + along / max(float(np.linalg.norm(along)), 1e-9) * offset[0]
    return heads[joint] + np.array(offset)


def create_body_mesh(arm_obj: Any, name: str, *, collection: Any = None) -> Any:
    """A smooth mannequin around the armature's rest pose: a capsule per bone (``_PIECES``), each weighted
    1.0 to its bone and deformed by an Armature modifier, shaded smooth, with the mannequin material."""
    collection = collection or context_scene().collection
    heads = {bone.name: np.array(bone.head_local) for bone in arm_obj.data.bones}
    verts: list[np.ndarray] = []
    faces: list[tuple[int, ...]] = []
    groups: list[tuple[str, range]] = []
    count = 0
    for bone_name, (j0, off0), (j1, off1), r0, r1, flat in _PIECES:
        if bone_name not in heads:
            continue
        flat_axis = np.array(_FLAT.get(bone_name.split("_")[-1], _BACK))
        v, f = _capsule(_point(arm_obj, heads, j0, off0), _point(arm_obj, heads, j1, off1), r0, r1, flat,
                        flat_axis)
        verts.append(v)
        faces.extend(tuple(count + i for i in face) for face in f)
        groups.append((bone_name, range(count, count + len(v))))
        count += len(v)

    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.concatenate(verts).tolist(), [], faces)
    mesh.update()
    mesh.shade_smooth()
    mesh.materials.append(compat.plain_material(MANNEQUIN_MATERIAL, MANNEQUIN_COLOR, roughness=0.55))
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
