"""Scene timing: frame rate from the dance, the song as a sound strip, frame range from the song;
and the context's scene and view layer, with a clear error where the context has none."""

from __future__ import annotations

import math
import os
from typing import Any

import bpy

from . import compat
from .errors import AudioUnsupportedError, BlenderLayerError, check_song_file

SONG_STRIP_NAME = "song"


def context_scene() -> bpy.types.Scene:
    """The context's scene; a clear error in a context without one (e.g. an override that drops it)."""
    scene = bpy.context.scene
    if scene is None:
        raise BlenderLayerError("this Blender context has no active scene: open or create a scene first")
    return scene


def context_view_layer() -> bpy.types.ViewLayer:
    """The context's view layer (selection and the active object live there); a clear error without one."""
    view_layer = bpy.context.view_layer
    if view_layer is None:
        raise BlenderLayerError("this Blender context has no active view layer: make a scene's view layer active")
    return view_layer


def set_scene_fps(scene: Any, fps: float) -> None:
    """Set ``render.fps``/``fps_base`` so that fps / fps_base == ``fps`` (e.g. 29.97 -> 30 / 1.001)."""
    if not (math.isfinite(fps) and fps > 0):
        raise BlenderLayerError(f"fps must be a positive number, got {fps}")
    whole = max(1, math.ceil(fps - 1e-6))
    scene.render.fps = whole
    scene.render.fps_base = whole / fps


def scene_fps(scene: Any) -> float:
    return scene.render.fps / scene.render.fps_base


def load_song(
    scene: Any,
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    frame_start: int = 1,
    channel: int = 1,
    set_frame_range: bool = True,
) -> Any:
    """Add the song as a sound strip starting at ``frame_start``; returns the strip.

    The fps (when given) is set first because a sound strip's length in frames is computed from the
    scene fps when it is added. The frame range follows the song unless ``set_frame_range`` is False.
    Strips of earlier songs added by this function (named "song*") are replaced.
    """
    song = os.path.abspath(os.fspath(path))
    check_song_file(song)
    if not compat.has_audio():
        raise AudioUnsupportedError(
            "this Blender build has no audio support (Audaspace), so the song cannot be added"
        )
    if fps is not None:
        set_scene_fps(scene, fps)
    strips = compat.sequencer_strips(scene)
    try:
        strip = strips.new_sound(SONG_STRIP_NAME, song, channel=channel, frame_start=frame_start)
    except RuntimeError as exc:
        raise BlenderLayerError(f"Blender cannot read the song {song}: {exc}") from exc
    for old in [s for s in strips if s.name.startswith(SONG_STRIP_NAME) and s != strip]:
        strips.remove(old)
    strip.name = SONG_STRIP_NAME
    if set_frame_range:
        scene.frame_start = frame_start
        scene.frame_end = frame_start + max(1, compat.strip_duration(strip)) - 1
    scene.sync_mode = "AUDIO_SYNC"  # playback keeps the dance on the beat
    return strip


def song_strip(scene: Any) -> Any | None:
    """The strip added by ``load_song``, or None."""
    if scene.sequence_editor is None:
        return None
    strips = compat.sequencer_strips(scene)
    return strips.get(SONG_STRIP_NAME)
