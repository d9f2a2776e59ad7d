"""MP4 renders of the dancer with the song muxed in (AAC), safe for batch use.

Workbench and EEVEE need OpenGL through EGL; without a usable EGL they abort the whole process
(SIGABRT, no Python exception). ``render_mp4`` therefore renders in a child process started from a
saved copy of the .blend: a crash there becomes a ``RenderError`` for that render, and the caller's
scene is never modified. Cycles (CPU) works without EGL. ``render_mp4_in_process`` is the same
render in this process, for a real Blender session where the GPU engines are known to work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import bpy

from .. import _engine
from . import render_setup
from .errors import RenderError, check_song_file

ENGINES = ("WORKBENCH", "EEVEE", "CYCLES")
EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri"


def _check_request(path: str | os.PathLike[str], engine: str, resolution: tuple[int, int],
                   song_path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    engine = engine.upper()
    if engine not in ENGINES:
        raise RenderError(f"unknown render engine {engine!r}: use one of {', '.join(ENGINES)}")
    if len(resolution) != 2 or min(int(resolution[0]), int(resolution[1])) < 2:
        raise RenderError(f"resolution must be (width, height) of at least 2 pixels, got {resolution}")
    out = Path(path).resolve()
    if out.suffix.lower() != ".mp4":
        out = out.with_name(out.name + ".mp4")
    if not out.parent.is_dir():
        raise RenderError(f"folder does not exist: {out.parent}")
    if song_path is not None:
        check_song_file(song_path, RenderError)
    return out, engine


def render_mp4(
    scene: Any,
    path: str | os.PathLike[str],
    engine: str = "WORKBENCH",
    resolution: tuple[int, int] = (640, 360),
    song_path: str | os.PathLike[str] | None = None,
    *,
    dancer: Any = None,
    frame_range: tuple[int, int] | None = None,
    cycles_samples: int = 16,
    timeout: float | None = None,
    caption: str | None = None,
) -> Path:
    """Render ``scene`` to an H.264 MP4 at ``path`` in a child process; returns the path.

    ``dancer`` (an armature object, or a list of them: a couple framed together) gets the preview's stage: a camera from the front three-quarters that
    follows it and fills the picture with it, a light, a tiled floor with shadows, and the caption
    (``caption``; by default "song · style · model" of its dance, "" for none). Without it the scene's
    camera and look are used as they are. ``song_path`` is muxed in as AAC (a song strip already in the
    scene is used when no path is given). Raises ``RenderError`` with the cause; nothing is written on
    failure.
    """
    out, engine = _check_request(path, engine, resolution, song_path)
    caption = _caption(caption, dancer, song_path)
    with _engine.files.atomic_file(out) as temp_out, tempfile.TemporaryDirectory(prefix="dance_render_") as work:
        blend = os.path.join(work, "scene.blend")
        bpy.ops.wm.save_as_mainfile(filepath=blend, copy=True, compress=False)
        job = {
            "blend": blend,
            "scene": scene.name,
            "output": str(temp_out),
            "engine": engine,
            "resolution": [int(resolution[0]), int(resolution[1])],
            "dancer": _dancer_names(dancer),
            "song_path": str(Path(song_path).resolve()) if song_path is not None else None,
            "frame_range": list(frame_range) if frame_range is not None else None,
            "cycles_samples": int(cycles_samples),
            "caption": caption,
        }
        job_path = os.path.join(work, "job.json")
        with open(job_path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        env = dict(os.environ, BLENDER_USER_RESOURCES=os.path.join(work, "user"))
        try:
            proc = subprocess.run(
                render_setup.child_command(job_path), capture_output=True, text=True, timeout=timeout,
                env=env, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RenderError(f"render of {out.name} took longer than {timeout} s and was stopped") from exc
        if proc.returncode != 0 or not temp_out.is_file() or temp_out.stat().st_size == 0:
            raise RenderError(_failure_message(engine, proc.returncode, proc.stdout + proc.stderr))
    return out


def _dancer_names(dancer: Any) -> str | list[str] | None:
    """The job's dancer: an armature's name, or a couple's names (framed together)."""
    if dancer is None:
        return None
    return [d.name for d in dancer] if isinstance(dancer, (list, tuple)) else dancer.name


def _caption(caption: str | None, dancer: Any, song_path: str | os.PathLike[str] | None) -> str | None:
    if caption is not None or dancer is None:
        return caption or None
    first = dancer[0] if isinstance(dancer, (list, tuple)) else dancer
    text = render_setup.dance_caption(first, str(song_path) if song_path is not None else None)
    return (f"{text}  ·  duet" if isinstance(dancer, (list, tuple)) and len(dancer) > 1 else text) or None


def _failure_message(engine: str, returncode: int, log: str) -> str:
    tail = " | ".join(line for line in log.strip().splitlines()[-4:] if line.strip())
    if returncode < 0:
        sig = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else -returncode
        hint = ""
        if engine in ("WORKBENCH", "EEVEE"):
            hint = (f"; {engine} needs OpenGL through EGL: install Mesa ({EGL_PACKAGES} on Debian/Ubuntu) "
                    "or render with CYCLES")
        return f"the {engine} render process crashed ({sig}){hint}. Last output: {tail}"
    return f"the {engine} render failed (exit code {returncode}). Last output: {tail}"


def render_mp4_in_process(
    scene: Any,
    path: str | os.PathLike[str],
    engine: str = "CYCLES",
    resolution: tuple[int, int] = (640, 360),
    song_path: str | os.PathLike[str] | None = None,
    *,
    dancer: Any = None,
    frame_range: tuple[int, int] | None = None,
    cycles_samples: int = 16,
    caption: str | None = None,
) -> Path:
    """Like ``render_mp4`` but in this process, changing this scene's render settings and camera.

    Only for Cycles, or when EGL is known to work: Workbench/EEVEE abort the process otherwise.
    """
    out, engine = _check_request(path, engine, resolution, song_path)
    caption = _caption(caption, dancer, song_path)
    try:
        with _engine.files.atomic_file(out) as temp_out:
            render_setup.render_animation(
                scene, str(temp_out), engine=engine, resolution=resolution,
                dancer=_dancer_names(dancer),
                song_path=str(Path(song_path).resolve()) if song_path is not None else None,
                frame_range=frame_range, cycles_samples=cycles_samples, caption=caption,
            )
            if temp_out.stat().st_size == 0:
                raise RenderError(f"Blender wrote no video for {out.name}")
    except RuntimeError as exc:
        raise RenderError(f"the {engine} render failed: {exc}") from exc
    return out


# A one-frame Workbench render to a PNG: exits 0 when OpenGL through EGL works.
_EGL_PROBE = (
    "import bpy, sys\n"
    "bpy.ops.wm.read_factory_settings(use_empty=True)\n"
    "s = bpy.context.scene\n"
    "s.render.engine = 'BLENDER_WORKBENCH'\n"
    "s.render.resolution_x = s.render.resolution_y = 8\n"
    "cam = bpy.data.objects.new('c', bpy.data.cameras.new('c')); s.collection.objects.link(cam); s.camera = cam\n"
    "s.render.filepath = sys.argv[-1]\n"
    "bpy.ops.render.render(write_still=True)\n"
)


@cache
def egl_available() -> bool:
    """True when Workbench/EEVEE can render here (tested once, in a child process)."""
    import sys

    if bpy.app.binary_path:
        command = [bpy.app.binary_path, "-b", "--factory-startup", "--python-expr", _EGL_PROBE, "--"]
    else:
        command = [sys.executable, "-c", _EGL_PROBE]
    with tempfile.TemporaryDirectory(prefix="dance_egl_") as work:
        png = os.path.join(work, "probe.png")
        env = dict(os.environ, BLENDER_USER_RESOURCES=os.path.join(work, "user"))
        try:
            proc = subprocess.run(command + [png], capture_output=True, timeout=120, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0 and os.path.isfile(png)
