"""Scene set-up for an MP4 of the dancer with the song, and the job a render child process runs.

This module imports only bpy, the standard library and ``compat`` (itself bpy-only), so a child
process can load it by file path without the add-on package: ``render.render_mp4`` saves a copy of
the .blend, starts ``python -c`` (bpy module) or ``blender -b`` (real Blender) and calls ``run_job``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, cast

import bpy
from mathutils import Vector

try:
    from . import compat
except ImportError:  # loaded by file path in a render child process
    _spec = importlib.util.spec_from_file_location("_dance_render_compat", Path(__file__).with_name("compat.py"))
    assert _spec is not None and _spec.loader is not None
    compat = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(compat)

CAMERA_NAME = "DanceCamera"
LIGHT_NAME = "DanceLight"


# The follow camera is keyed every this many seconds (Bezier in between) and its path is smoothed over
# three keys, so it glides after a travelling dancer instead of shaking with every step.
FOLLOW_EVERY_S = 0.5


def _sample_frames(frame_range: tuple[int, int], count: int) -> list[int]:
    start, end = frame_range
    count = max(1, min(count, end - start + 1))
    return sorted({round(start + (end - start) * i / max(1, count - 1)) for i in range(count)})


def _armatures(obj: Any) -> list[Any]:
    """One armature, or several (a couple): what is framed together."""
    return list(obj) if isinstance(obj, (list, tuple)) else [obj]


def bone_boxes(scene: Any, obj: Any, frames: list[int]) -> list[tuple[Vector, Vector]]:
    """World bounding box (min, max) of the armature's bones (or of several armatures' together) at each
    frame, padded by 10 cm (bones are thinner than the body around them)."""
    saved = scene.frame_current
    boxes = []
    for frame in frames:
        scene.frame_set(frame)
        lo = Vector((math.inf,) * 3)
        hi = Vector((-math.inf,) * 3)
        for arm, pose_bone in ((a, b) for a in _armatures(obj) for b in a.pose.bones):
            for p in (arm.matrix_world @ pose_bone.head, arm.matrix_world @ pose_bone.tail):
                for axis in range(3):  # grow the box to contain p
                    lo[axis] = min(lo[axis], p[axis])
                    hi[axis] = max(hi[axis], p[axis])
        pad = Vector((0.1, 0.1, 0.1))
        boxes.append((lo - pad, hi + pad))
    scene.frame_set(saved)
    return boxes


def dancer_bounds(scene: Any, obj: Any, frame_range: tuple[int, int], samples: int = 24) -> tuple[Vector, Vector]:
    """World bounding box (min, max) of the armature's bones over ``samples`` frames of the range."""
    boxes = bone_boxes(scene, obj, _sample_frames(frame_range, samples))
    lo = Vector([min(b[0][axis] for b in boxes) for axis in range(3)])
    hi = Vector([max(b[1][axis] for b in boxes) for axis in range(3)])
    return lo, hi


# The camera looks at the dancer (who faces -y) from the front three-quarters, slightly from above.
VIEW_DIRECTION = Vector((0.62, -1.0, 0.28)).normalized()  # from the dancer towards the camera
LENS_MM = 50.0
FLOOR_NAME = "DanceFloor"
FLOOR_TILE_M = 0.5
FLOOR_COLORS = ((0.56, 0.57, 0.60, 1.0), (0.42, 0.43, 0.46, 1.0))
BACKGROUND = (0.045, 0.05, 0.065)


def _camera_basis(view_dir: Vector) -> tuple[Vector, Vector]:
    """(right, up) of a camera looking along -view_dir with the world's z up."""
    right = cast(Vector, Vector((0.0, 0.0, 1.0)).cross(view_dir)).normalized()
    return right, cast(Vector, view_dir.cross(right)).normalized()


def _camera_distance(scene: Any, cam_data: Any, view_dir: Vector, aims: list[Vector],
                     boxes: list[tuple[Vector, Vector]], margin: float) -> float:
    """The least distance from each aim point (along ``view_dir``) at which every corner of its box is
    in the picture with ``margin`` to spare: the tightest framing that still shows the whole body."""
    width, height = scene.render.resolution_x, scene.render.resolution_y
    tan_half = math.tan(cam_data.angle / 2.0)  # the larger image side
    tan_x = tan_half * (1.0 if width >= height else width / height)
    tan_y = tan_half * (1.0 if height >= width else height / width)
    right, up = _camera_basis(view_dir)
    distance = 0.0
    for aim, (lo, hi) in zip(aims, boxes):
        for corner in ((x, y, z) for x in (lo.x, hi.x) for y in (lo.y, hi.y) for z in (lo.z, hi.z)):
            r = Vector(corner) - aim
            toward = r.dot(view_dir)  # how much nearer the camera the corner is than the aim point
            distance = max(distance, abs(r.dot(right)) * margin / tan_x + toward,
                           abs(r.dot(up)) * margin / tan_y + toward)
    return max(distance, 1.0)


def frame_dancer(scene: Any, obj: Any, frame_range: tuple[int, int], *, margin: float = 1.08,
                 follow: bool = True) -> Any:
    """Add (or reuse) a camera on the dancer from the front three-quarters, slightly above, filling the
    picture with the body, and a sun light; returns the camera object. The dancer faces -Y (SMPL's +Z
    forward, converted).

    ``follow``: the camera travels with the dancer (keyed every ``FOLLOW_EVERY_S``, smoothed), framing the
    body rather than the whole path it travels, so a dancer who crosses the floor stays large in the
    picture. Otherwise, or for a single frame, one fixed camera sees the whole path.
    """
    cam_data = bpy.data.cameras.get(CAMERA_NAME) or bpy.data.cameras.new(CAMERA_NAME)
    camera = bpy.data.objects.get(CAMERA_NAME) or bpy.data.objects.new(CAMERA_NAME, cam_data)
    if camera.name not in scene.collection.objects:
        scene.collection.objects.link(camera)
    camera.animation_data_clear()  # a reused camera forgets its previous path
    cam_data.lens = LENS_MM
    cam_data.clip_end = 1000.0
    view_dir = VIEW_DIRECTION
    camera.rotation_mode = "QUATERNION"
    camera.rotation_quaternion = (-view_dir).to_track_quat("-Z", "Y")
    scene.camera = camera

    start, end = frame_range
    fps = scene.render.fps / scene.render.fps_base
    count = int(math.ceil((end - start) / max(1.0, FOLLOW_EVERY_S * fps))) + 1
    if follow and end > start and count >= 3:
        frames = _sample_frames(frame_range, count)
        boxes = bone_boxes(scene, obj, frames)
        centres = [(lo + hi) / 2.0 for lo, hi in boxes]
        height = sorted(c.z for c in centres)[len(centres) // 2]  # a steady height: jumps do not lift the view
        path = []
        for i in range(len(centres)):  # moving average over three keys, the ends held
            near = centres[max(0, i - 1) : i + 2]
            mean = sum(near, Vector((0.0, 0.0, 0.0))) / len(near)
            path.append(Vector((mean.x, mean.y, height)))
        # Keys are Bezier-interpolated: frames between keys see a body between two keys' boxes, so each
        # key's distance must hold its neighbours' boxes too.
        neighbours = [(path[i], boxes[k]) for i in range(len(path))
                      for k in range(max(0, i - 1), min(len(path), i + 2))]
        distance = _camera_distance(scene, cam_data, view_dir, [a for a, _ in neighbours],
                                    [b for _, b in neighbours], margin)
        for frame, aim in zip(frames, path):
            camera.location = aim + view_dir * distance
            camera.keyframe_insert("location", frame=frame)
    else:
        lo, hi = dancer_bounds(scene, obj, frame_range)
        centre = (lo + hi) / 2.0
        camera.location = centre + view_dir * _camera_distance(scene, cam_data, view_dir, [centre], [(lo, hi)],
                                                               margin)

    # energy is defined per light type, not on the base Light; DanceLight is made here as a sun.
    light_data = cast(
        bpy.types.SunLight, bpy.data.lights.get(LIGHT_NAME) or bpy.data.lights.new(LIGHT_NAME, type="SUN")
    )
    light = bpy.data.objects.get(LIGHT_NAME) or bpy.data.objects.new(LIGHT_NAME, light_data)
    if light.name not in scene.collection.objects:
        scene.collection.objects.link(light)
    light_data.energy = 3.0
    light.rotation_euler = (math.radians(40.0), 0.0, math.radians(30.0))

    if scene.world is None:
        scene.world = bpy.data.worlds.new("DanceWorld")
    scene.world.color = BACKGROUND
    return camera


def add_floor(scene: Any, obj: Any, frame_range: tuple[int, int], *, margin_m: float = 8.0) -> Any:
    """A tiled floor at z = 0 (where the engine puts the soles) under the dancer's whole path, reaching
    ``margin_m`` beyond it: two tones of ``FLOOR_TILE_M`` tiles, so steps and travel read on screen.
    Replaces a floor an earlier render made."""
    old = bpy.data.objects.get(FLOOR_NAME)
    if old is not None:
        mesh = old.data
        bpy.data.objects.remove(old)
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)
    lo, hi = dancer_bounds(scene, obj, frame_range)
    tile = FLOOR_TILE_M
    x0, x1 = (math.floor((lo.x - margin_m) / tile), math.ceil((hi.x + margin_m) / tile))
    y0, y1 = (math.floor((lo.y - margin_m) / tile), math.ceil((hi.y + margin_m) / tile))
    verts, faces, dark = [], [], []
    nx = x1 - x0 + 1
    for j in range(y0, y1 + 1):
        for i in range(x0, x1 + 1):
            verts.append((i * tile, j * tile, 0.0))
    for j in range(y1 - y0):
        for i in range(x1 - x0):
            a = j * nx + i
            faces.append((a, a + 1, a + 1 + nx, a + nx))
            dark.append((i + x0 + j + y0) % 2)
    mesh = bpy.data.meshes.new(FLOOR_NAME)
    mesh.from_pydata(verts, [], faces)
    for k, color in enumerate(FLOOR_COLORS):
        mesh.materials.append(compat.plain_material(f"{FLOOR_NAME}{k}", color, roughness=0.8))
    mesh.polygons.foreach_set("material_index", dark)
    mesh.update()
    floor = bpy.data.objects.new(FLOOR_NAME, mesh)
    scene.collection.objects.link(floor)
    return floor


def stage_look(scene: Any) -> None:
    """How the framed dancer is drawn: materials' colours, shadows on the floor, the dark background."""
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "MATERIAL"
    shading.show_shadows = True
    shading.shadow_intensity = 0.5
    # Workbench's shadow light (its default direction): the shadow falls beside the feet, on screen
    scene.display.light_direction = (0.577, 0.577, 0.577)
    scene.display.shadow_shift = 0.05
    shading.background_type = "WORLD"


def set_caption(scene: Any, text: str) -> None:
    """Burn ``text`` into every frame (Blender's render stamp, the note field alone)."""
    render = scene.render
    for field in ("date", "time", "render_time", "frame", "frame_range", "memory", "hostname", "camera",
                  "lens", "scene", "marker", "filename", "sequencer_strip", "note"):
        if hasattr(render, f"use_stamp_{field}"):
            setattr(render, f"use_stamp_{field}", False)
    render.use_stamp = True
    render.use_stamp_note = True
    render.stamp_note_text = text
    render.stamp_font_size = max(12, scene.render.resolution_y // 24)
    render.stamp_foreground = (1.0, 1.0, 1.0, 1.0)
    render.stamp_background = (0.0, 0.0, 0.0, 0.45)


# Custom properties a generated dance's action carries, for its caption.
ACTION_STYLE_KEY = "dance_style"
ACTION_MODEL_KEY = "dance_model"


def tag_action(action: Any, meta: dict[str, Any]) -> None:
    """Record on ``action`` the style and model of the dance it holds (a dance's ``meta``)."""
    action[ACTION_STYLE_KEY] = meta.get("style") or "any"
    if meta.get("model"):
        action[ACTION_MODEL_KEY] = str(meta["model"])


def dance_caption(obj: Any, song_path: str | None) -> str:
    """'song · style · model' for the dance on ``obj`` (what ``tag_action`` recorded on its action)."""
    action = obj.animation_data.action if obj is not None and obj.animation_data is not None else None
    parts = [Path(song_path).stem if song_path else (action.name if action is not None else "")]
    if action is not None and ACTION_STYLE_KEY in action:
        style = action.get(ACTION_STYLE_KEY)
        model = action.get(ACTION_MODEL_KEY)
        parts.append(f"style: {style or 'any'}")
        if model:
            parts.append(f"model: {model}")
    return "  ·  ".join(p for p in parts if p)


def add_song_strip(scene: Any, song_path: str) -> None:
    """Add the song as a sound strip at the range start unless a strip already plays this file."""
    song = os.path.abspath(song_path)
    strips = compat.sequencer_strips(scene)
    for strip in strips:
        sound = getattr(strip, "sound", None)
        if sound is not None and os.path.abspath(bpy.path.abspath(sound.filepath)) == song:
            return
    strips.new_sound("song", song, channel=1, frame_start=scene.frame_start)


def configure_mp4(
    scene: Any,
    output: str,
    *,
    engine: str,
    resolution: tuple[int, int],
    cycles_samples: int = 16,
    with_audio: bool = True,
) -> None:
    """H.264 MP4 (AAC audio when ``with_audio``) at ``output`` with the chosen engine."""
    render = scene.render
    render.engine = compat.render_engine_id(engine)
    render.resolution_x, render.resolution_y = (int(resolution[0]) // 2) * 2, (int(resolution[1]) // 2) * 2
    render.resolution_percentage = 100
    render.filepath = output
    render.use_file_extension = False
    compat.set_video_output(render.image_settings)
    ffmpeg = render.ffmpeg
    ffmpeg.format = "MPEG4"
    ffmpeg.codec = "H264"
    ffmpeg.constant_rate_factor = "MEDIUM"
    ffmpeg.ffmpeg_preset = "REALTIME"
    if with_audio:
        ffmpeg.audio_codec = "AAC"
        ffmpeg.audio_channels = "STEREO"
        ffmpeg.audio_mixrate = 48000
        ffmpeg.audio_bitrate = 192
    else:
        ffmpeg.audio_codec = "NONE"
    if render.engine == "BLENDER_WORKBENCH":
        # Workbench's default 8-sample anti-aliasing draws every frame 8 times, which software OpenGL
        # (a machine without a GPU) pays in full: FXAA rendered the demo song's first 10 s in 20.7 s
        # instead of 44.3, with frames that differ by 0.06 % of the range after H.264. ``render_animation``
        # turns even FXAA off on software OpenGL (see ``fit_antialiasing_to_gpu``).
        scene.display.render_aa = "FXAA"
    if render.engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.samples = max(1, int(cycles_samples))
        scene.cycles.use_denoising = False


def render_animation(
    scene: Any,
    output: str,
    *,
    engine: str,
    resolution: tuple[int, int],
    dancer: str | list[str] | None = None,
    song_path: str | None = None,
    frame_range: tuple[int, int] | None = None,
    cycles_samples: int = 16,
    caption: str | None = None,
) -> None:
    """Set up camera/light/output on ``scene`` and render its animation to ``output`` (in-process).
    With a ``dancer``: the stage too (floor, shadows, background) and a camera framing the dancer."""
    if frame_range is not None:
        scene.frame_start, scene.frame_end = int(frame_range[0]), int(frame_range[1])
    audio = compat.has_audio()  # the PyPI bpy 4.2 build has no Audaspace: a silent video, said on stderr
    if not audio and (song_path is not None or _has_sound_strip(scene)):
        print("warning: this Blender build has no audio support (Audaspace): the video has no sound",
              file=sys.stderr)
    configure_mp4(
        scene, output, engine=engine, resolution=resolution, cycles_samples=cycles_samples,
        with_audio=audio and (song_path is not None or _has_sound_strip(scene)),
    )
    if song_path is not None and audio:
        add_song_strip(scene, song_path)
    if dancer is not None:  # one armature, or a couple framed together
        obj = [bpy.data.objects[n] for n in dancer] if isinstance(dancer, list) else bpy.data.objects[dancer]
        frame_dancer(scene, obj, (scene.frame_start, scene.frame_end))
        add_floor(scene, obj, (scene.frame_start, scene.frame_end))
        stage_look(scene)
    if caption:
        set_caption(scene, caption)
    if scene.camera is None:
        raise RuntimeError("the scene has no camera and no dancer to frame")
    if render_engine_is_workbench(scene):
        fit_antialiasing_to_gpu(scene)
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(animation=True, scene=scene.name)


def render_engine_is_workbench(scene: Any) -> bool:
    return bool(scene.render.engine == "BLENDER_WORKBENCH")


def fit_antialiasing_to_gpu(scene: Any) -> str:
    """FXAA on a GPU, where it is free; none on software OpenGL (llvmpipe, a machine without a GPU),
    where FXAA took half of each frame's time (10 s of the demo song: 25.9 s with it, 12.7 s without).
    Which one runs is only known once OpenGL is up, so one frame is rendered first (not written)."""
    import gpu

    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=False, scene=scene.name)
    software = gpu.platform.device_type_get() == "SOFTWARE"
    if software and scene.display.render_aa == "FXAA":
        scene.display.render_aa = "OFF"
    return str(scene.display.render_aa)


def _has_sound_strip(scene: Any) -> bool:
    if scene.sequence_editor is None:
        return False
    return any(getattr(s, "sound", None) is not None for s in compat.sequencer_strips(scene))


def run_job(job_path: str) -> None:
    """Entry point of the render child process: open the saved .blend, render, exit."""
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    bpy.ops.wm.open_mainfile(filepath=job["blend"])
    scene = bpy.data.scenes[job["scene"]]
    width, height = job["resolution"]
    frame_range = job.get("frame_range")
    render_animation(
        scene,
        job["output"],
        engine=job["engine"],
        resolution=(width, height),
        dancer=job.get("dancer"),
        song_path=job.get("song_path"),
        frame_range=(frame_range[0], frame_range[1]) if frame_range else None,
        cycles_samples=job.get("cycles_samples", 16),
        caption=job.get("caption"),
    )


# Code a child process runs; argv[-1] is the job file, argv[-2] this module's path.
CHILD_CODE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_dance_render_setup', sys.argv[-2])\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(mod)\n"
    "mod.run_job(sys.argv[-1])\n"
)


def child_command(job_path: str) -> list[str]:
    """The command line of a render child process for this Python/Blender."""
    module = str(Path(__file__).resolve())
    if bpy.app.binary_path:  # inside a real Blender: its own binary, in the background
        return [
            bpy.app.binary_path, "-b", "--factory-startup", "--python-exit-code", "1",
            "--python-expr", CHILD_CODE, "--", module, job_path,
        ]
    return [sys.executable, "-c", CHILD_CODE, module, job_path]  # the bpy module: plain Python
