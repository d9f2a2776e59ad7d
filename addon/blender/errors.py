"""Errors of the add-on: finer types under the engine's ``DanceError`` (one clear line each; the convention
is the engine's, see ``engine/errors.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _engine
from .._engine import errors

if TYPE_CHECKING:  # the shim imports the engine dynamically; give the type checker the real class
    from engine.errors import DanceError
else:
    DanceError = errors.DanceError


class BlenderLayerError(DanceError):
    """Something in the Blender scene prevents the operation; the scene was left unchanged."""


class RigMappingError(BlenderLayerError):
    """The target rig lacks bones the chosen bone-map preset needs (the message names them)."""


class ExportError(BlenderLayerError):
    """An FBX/BVH export failed; nothing was written at the destination."""


class RenderError(BlenderLayerError):
    """A render failed (or its child process crashed); nothing was written at the destination."""


class JobBusyError(DanceError):
    """Another generation is still running (one at a time: the engine holds one model and the CPU)."""


class AudioUnsupportedError(BlenderLayerError):
    """This Blender build has no audio support (e.g. the PyPI bpy 4.2 wheel), so no sound strip."""


def check_song_file(path: Any, error: type[BlenderLayerError] = BlenderLayerError) -> None:
    """The engine's song-file check (exists, regular file, audio extension: never a FIFO or a device),
    its error re-raised as ``error`` with the same message."""
    try:
        _engine.audio.check_song_file(path)
    except errors.DanceError as exc:
        raise error(str(exc)) from exc
