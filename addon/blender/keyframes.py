"""Bulk keyframes: a dance (local rotations + root translation) -> a new action on an SMPL armature.

Conversion (docs/REFERENCE.md §5.3), with C the y-up -> z-up matrix and A a bone's armature-space
rest orientation (``bone.matrix_local``): ``basis = A^T (C R_local C^T) A`` and the pelvis location
``A_pelvis^T (C (J_pelvis + t) - head_pelvis)``. Keys are written with ``keyframe_points.add`` +
``foreach_set`` (hundreds of times faster than ``keyframe_insert``), LINEAR, with quaternion signs
made continuous so interpolation never spins the long way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .._engine import errors, rotation, skeleton
from . import compat
from .errors import BlenderLayerError
from .scene import set_scene_fps

C = skeleton.YUP_TO_ZUP


def continuous_quaternions(quats: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (time) so consecutive quaternions lie in one hemisphere."""
    return rotation.make_continuous(quats, axis=0)


def bone_rest_matrices(obj: Any, bone_names: Sequence[str]) -> np.ndarray:
    """Armature-space rest orientation of each named bone (N, 3, 3)."""
    return np.array([np.array(obj.data.bones[n].matrix_local)[:3, :3] for n in bone_names])


def write_pose_action(
    obj: Any,
    action_name: str,
    bone_quaternions: dict[str, np.ndarray],
    *,
    root_bone: str | None = None,
    root_locations: np.ndarray | None = None,
    frame_start: int = 1,
) -> Any:
    """Write one key per frame for each bone's ``rotation_quaternion`` (T, 4), already continuous in
    time (see ``continuous_quaternions``), and the root bone's ``location`` (T, 3), into a NEW action assigned to ``obj``; returns the action.

    ``bpy.data.actions.new`` picks a unique name ("song.001" when "song" exists), so an existing
    action is never overwritten.
    """
    action = bpy.data.actions.new(action_name)
    compat.assign_new_action(obj, action)
    num_frames = next(iter(bone_quaternions.values())).shape[0]
    keys = np.empty((num_frames, 2), dtype=np.float32)  # interleaved (frame, value)
    keys[:, 0] = np.arange(frame_start, frame_start + num_frames, dtype=np.float32)
    linear = np.full(num_frames, compat.INTERPOLATION_LINEAR, dtype=np.int32)

    def write(data_path: str, group: str, values: np.ndarray) -> None:  # values (T, channels)
        for index in range(values.shape[1]):
            fcurve = compat.new_fcurve(obj, action, data_path, index, group)
            points = fcurve.keyframe_points
            points.add(num_frames)
            keys[:, 1] = values[:, index]
            points.foreach_set("co", keys.ravel())
            points.foreach_set("interpolation", linear)
            fcurve.update()

    for bone_name, quats in bone_quaternions.items():
        obj.pose.bones[bone_name].rotation_mode = "QUATERNION"
        write(f'pose.bones["{bone_name}"].rotation_quaternion', bone_name, quats)
    if root_bone is not None and root_locations is not None:
        write(f'pose.bones["{root_bone}"].location', root_bone, np.asarray(root_locations))
    return action


def dance_motion(dance: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The checked (rotations, translation, rest_joints) of an ``engine.dance.Dance``; its error as a
    ``BlenderLayerError`` (raised before anything in the scene changes)."""
    try:
        return dance.checked_motion()
    except errors.DanceError as exc:
        raise BlenderLayerError(f"cannot key the dance: {exc}") from exc


def action_name_for(dance: Any) -> str:
    """A dance's action is named after its song file (the stem), else "dance"."""
    return Path(dance.song_path).stem if dance.song_path else "dance"


def smpl_basis(rotations: np.ndarray, rest_orientations: np.ndarray) -> np.ndarray:
    """Local SMPL rotations (T, 24, 4) y-up -> Blender pose-bone basis quaternions (T, 24, 4).

    ``basis = A^T (C R C^T) A = B^T R B`` with ``B = C^T A`` per bone (A: (24, 3, 3)); done as the
    quaternion product ``conj(q_B) q_R q_B``, which is much cheaper than matrices for long dances.
    """
    b = rotation.matrix_to_quaternion(np.einsum("ij,bjk->bik", C.T, rest_orientations))  # (24, 4)
    b_conj = b * np.array([1.0, -1.0, -1.0, -1.0])
    q = rotations / np.linalg.norm(rotations, axis=-1, keepdims=True)
    return rotation.quaternion_multiply(rotation.quaternion_multiply(b_conj, q), b)


def _check_smpl_bones(obj: Any, bone_names: Sequence[str]) -> None:
    """``obj`` is an armature holding the 24 bones ``bone_names`` (SMPL joint order)."""
    if getattr(obj, "type", None) != "ARMATURE":
        raise BlenderLayerError(f"{getattr(obj, 'name', obj)!r} is not an armature object")
    if len(bone_names) != skeleton.NUM_JOINTS:
        raise BlenderLayerError(f"bone_names must name 24 bones, got {len(bone_names)}")
    missing = [n for n in bone_names if n not in obj.data.bones]
    if missing:
        raise BlenderLayerError(f"armature {obj.name!r} lacks the bones: {', '.join(missing)}")


def _root_locations(obj: Any, root_bone: str, root_rest: np.ndarray, rest_joints: np.ndarray,
                   translation: np.ndarray) -> np.ndarray:
    """Pose-bone ``location`` of the root bone (..., 3) that puts the pelvis at world C (J0 + t).

    root_rest (3, 3): the root bone's armature-space rest orientation; translation (..., 3) y-up.
    """
    head = np.array(obj.data.bones[root_bone].head_local)
    # Pelvis world target C (J0 + t), expressed in the pelvis bone's rest frame relative to its head.
    return ((rest_joints[0] + translation) @ C.T - head) @ root_rest


def set_pose(
    obj: Any,
    rotations: np.ndarray,
    translation: np.ndarray | None = None,
    rest_joints: np.ndarray | None = None,
    *,
    bone_names: Sequence[str] = skeleton.JOINT_NAMES,
) -> None:
    """Pose an SMPL-like armature now, without keys: one pose of a dance.

    rotations (24, 4) local quaternions w-first, engine y-up (as one frame of ``apply_dance``). With
    ``translation`` (3,) and the ``rest_joints`` (24, 3) it applies to, the root bone is moved as
    ``apply_dance`` keys it; without, the root bone's location is left as it is. Raises
    ``BlenderLayerError`` (pose unchanged) on bad shapes or missing bones.
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.shape != (skeleton.NUM_JOINTS, 4):
        raise BlenderLayerError(f"rotations must be (24, 4) quaternions, got shape {rotations.shape}")
    if translation is not None:
        translation = np.asarray(translation, dtype=np.float64)
        if translation.shape != (3,):
            raise BlenderLayerError(f"translation must be (3,), got shape {translation.shape}")
        if rest_joints is None:
            raise BlenderLayerError("a pose with a translation needs the rest joints it applies to")
        rest_joints = np.asarray(rest_joints, dtype=np.float64)
        if rest_joints.shape != (skeleton.NUM_JOINTS, 3):
            raise BlenderLayerError(f"rest joints must be (24, 3), got shape {rest_joints.shape}")
    for label, arr in (("rotations", rotations), ("translation", translation), ("rest joints", rest_joints)):
        if arr is not None and not np.all(np.isfinite(arr)):
            raise BlenderLayerError(f"the pose's {label} contain NaN or infinite values")
    _check_smpl_bones(obj, bone_names)

    rest_orient = bone_rest_matrices(obj, bone_names)  # (24, 3, 3)
    basis = smpl_basis(rotations[None], rest_orient)[0]  # (24, 4)
    for name, quat in zip(bone_names, basis):
        bone = obj.pose.bones[name]
        bone.rotation_mode = "QUATERNION"
        bone.rotation_quaternion = tuple(float(v) for v in quat)
    if translation is not None and rest_joints is not None:
        location = _root_locations(obj, bone_names[0], rest_orient[0], rest_joints, translation)  # (3,)
        obj.pose.bones[bone_names[0]].location = tuple(float(v) for v in location)


def apply_dance(
    obj: Any,
    dance: Any,
    action_name: str | None = None,
    *,
    bone_names: Sequence[str] = skeleton.JOINT_NAMES,
    frame_start: int = 1,
    scene: Any = None,
) -> Any:
    """Key an ``engine.dance.Dance`` (its local rotations, root translation and rest joints, engine y-up
    metres, the FK convention of ``engine.skeleton.forward_kinematics_matrices``) onto an SMPL-like
    armature ``obj`` as a new action, named ``action_name`` or after the song; ``bone_names[j]`` is the
    bone of SMPL joint j. Sets the scene's fps and frame range to the dance. Returns the action.
    Raises ``BlenderLayerError`` (scene unchanged) on a dance that is not a motion or missing bones.
    """
    rotations, translation, rest_joints = dance_motion(dance)
    _check_smpl_bones(obj, bone_names)
    scene = scene or bpy.context.scene

    rest_orient = bone_rest_matrices(obj, bone_names)  # (24, 3, 3)
    basis = continuous_quaternions(smpl_basis(rotations, rest_orient))  # (T, 24, 4)
    action = write_pose_action(
        obj,
        action_name or action_name_for(dance),
        {name: basis[:, j] for j, name in enumerate(bone_names)},
        root_bone=bone_names[0],
        root_locations=_root_locations(obj, bone_names[0], rest_orient[0], rest_joints, translation),
        frame_start=frame_start,
    )
    set_scene_fps(scene, dance.fps)
    scene.frame_start = frame_start
    scene.frame_end = frame_start + rotations.shape[0] - 1
    return action
