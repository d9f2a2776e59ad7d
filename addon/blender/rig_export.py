"""FBX and BVH export of a keyed armature, with the song copied beside the file.

Both are atomic: the exporter writes a temporary file in the destination folder, which is renamed
over the destination only when the export succeeded. FBX settings follow docs/REFERENCE.md §5.1: no leaf
bones, only the active action, baked with every key kept (simplify 0), Y/X bone axes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

import bpy

from .. import _engine
from .errors import ExportError, check_song_file
from .scene import context_view_layer

# Rotation orders Blender's BVH exporter accepts (NATIVE: each bone's own rotation mode).
BvhRotateMode = Literal["NATIVE", "XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"]


def copy_song_beside(song_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> Path:
    """Copy the song next to ``output_path`` as ``<output stem><song suffix>``; returns the copy."""
    song = Path(song_path).resolve()
    _check_song(song)
    target = Path(output_path).resolve().with_suffix(song.suffix.lower())
    if target == song:
        return target
    try:
        with _engine.files.atomic_file(target) as temp:
            shutil.copyfile(song, temp)
    except OSError as exc:
        raise ExportError(f"cannot copy the song to {target}: {exc}") from exc
    return target


def _check_song(song_path: str | os.PathLike[str] | None) -> None:
    if song_path is not None:
        check_song_file(song_path, ExportError)


def _check_destination(path: str | os.PathLike[str], suffix: str) -> Path:
    out = Path(path).resolve()
    if out.suffix.lower() != suffix:
        out = out.with_name(out.name + suffix)
    if not out.parent.is_dir():
        raise ExportError(f"folder does not exist: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise ExportError(f"folder is not writable: {out.parent}")
    return out


def _action_frame_range(obj: Any, scene: Any) -> tuple[int, int]:
    anim = obj.animation_data
    if anim is not None and anim.action is not None:
        start, end = anim.action.frame_range
        return int(round(start)), int(round(end))
    return scene.frame_start, scene.frame_end


@contextmanager
def _selected_only(objects: list[Any], active: Any) -> Iterator[None]:
    """Select exactly ``objects`` with ``active`` active, restoring the previous selection after."""
    view_layer = context_view_layer()
    previous_active = view_layer.objects.active
    previous = [o for o in view_layer.objects if o.select_get()]
    if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    try:
        for o in previous:
            o.select_set(False)
        for o in objects:
            o.select_set(True)
        view_layer.objects.active = active
        yield
    finally:
        for o in objects:
            o.select_set(False)
        for o in previous:
            if o.name in view_layer.objects:
                o.select_set(True)
        view_layer.objects.active = previous_active


@contextmanager
def _scene_frame_range(scene: Any, frame_range: tuple[int, int]) -> Iterator[None]:
    saved = scene.frame_start, scene.frame_end, scene.frame_current
    scene.frame_start, scene.frame_end = frame_range
    try:
        yield
    finally:
        scene.frame_start, scene.frame_end = saved[0], saved[1]
        scene.frame_set(saved[2])


def _check_armature(obj: Any) -> None:
    if getattr(obj, "type", None) != "ARMATURE":
        raise ExportError(f"{getattr(obj, 'name', obj)!r} is not an armature object")


def _export_atomically(
    fmt: str,
    write: Callable[[Path], set[str]],
    out: Path,
    song_path: str | os.PathLike[str] | None,
) -> Path:
    """Run Blender's exporter ``write(temp)`` into a temporary file beside ``out``, rename it over
    ``out`` only when the exporter finished, then copy the song beside it; returns ``out``."""
    try:
        with _engine.files.atomic_file(out) as temp:
            result = write(temp)
            if "FINISHED" not in result or temp.stat().st_size == 0:
                raise ExportError(f"the {fmt} exporter did not finish ({', '.join(result)})")
    except (RuntimeError, OSError) as exc:
        raise ExportError(f"{fmt} export to {out} failed: {exc}") from exc
    if song_path is not None:
        copy_song_beside(song_path, out)
    return out


def export_fbx(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    song_path: str | os.PathLike[str] | None = None,
    include_meshes: bool = True,
    frame_range: tuple[int, int] | None = None,
    deform_bones_only: bool = False,
    scene: Any = None,
) -> Path:
    """Export the armature ``obj`` (and its child meshes) with its active action to FBX; returns the path.

    With ``song_path`` the song is copied beside the FBX (``dance.fbx`` + ``dance.wav``).
    """
    _check_armature(obj)
    _check_song(song_path)
    out = _check_destination(path, ".fbx")
    scene = scene or bpy.context.scene
    frames = frame_range or _action_frame_range(obj, scene)
    objects = [obj] + ([c for c in obj.children if c.type == "MESH"] if include_meshes else [])

    def write(temp: Path) -> set[str]:
        with _selected_only(objects, obj), _scene_frame_range(scene, frames):
            # The stubs type operator calls as returning None; bpy returns a set such as {'FINISHED'}.
            return cast("set[str]", bpy.ops.export_scene.fbx(
                filepath=str(temp),
                check_existing=False,
                use_selection=True,
                object_types={"ARMATURE", "MESH"} if include_meshes else {"ARMATURE"},
                add_leaf_bones=False,
                bake_anim=True,
                bake_anim_use_all_bones=True,
                bake_anim_use_all_actions=False,
                bake_anim_use_nla_strips=False,
                bake_anim_force_startend_keying=True,
                bake_anim_step=1.0,
                bake_anim_simplify_factor=0.0,
                primary_bone_axis="Y",
                secondary_bone_axis="X",
                armature_nodetype="NULL",
                use_armature_deform_only=deform_bones_only,
                apply_scale_options="FBX_SCALE_ALL",
                axis_forward="-Z",
                axis_up="Y",
            ))

    return _export_atomically("FBX", write, out, song_path)


def export_bvh(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    song_path: str | os.PathLike[str] | None = None,
    frame_range: tuple[int, int] | None = None,
    rotate_mode: BvhRotateMode = "NATIVE",
    scene: Any = None,
) -> Path:
    """Export the armature's animation to BVH (translation on the root only); returns the path.

    Blender's exporter writes Blender's z-up world coordinates (the engine's own BVH, ``engine.bvh``, is
    y-up; both use the .bvh extension). With ``song_path`` the song is copied
    beside the BVH.
    """
    _check_armature(obj)
    _check_song(song_path)
    out = _check_destination(path, ".bvh")
    scene = scene or bpy.context.scene
    start, end = frame_range or _action_frame_range(obj, scene)

    def write(temp: Path) -> set[str]:
        with _selected_only([obj], obj):
            return cast("set[str]", bpy.ops.export_anim.bvh(  # a set, as for FBX above
                filepath=str(temp),
                check_existing=False,
                frame_start=start,
                frame_end=end,
                rotate_mode=rotate_mode,
                root_transform_only=True,
            ))

    return _export_atomically("BVH", write, out, song_path)
