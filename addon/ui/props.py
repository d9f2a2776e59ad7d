"""Properties: the dance settings of a scene (``scene.dance``), the marker on armatures the add-on made
(``object.dance``) and the running job's progress (``window_manager.dance_job``, never saved and never
part of undo, so a cancelled generation leaves the scene exactly as it was)."""

from __future__ import annotations

import time
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty
from bpy.types import PropertyGroup

from ..blender import rigmap
from . import core, prefs

# Set while "From current pose" writes both codes, so the preview runs once, not per code.
_PREVIEW_SUSPENDED = False
LAST_PREVIEW_MS = 0.0


def preview_target(context: Any) -> Any | None:
    """The armature the start-code preview poses: the active SMPL armature, else the scene's."""
    obj = context.active_object
    if core.is_smpl_armature(obj):
        return obj
    obj = context.scene.dance.armature
    return obj if core.is_smpl_armature(obj) else None


def preview_start_codes(context: Any) -> None:
    """Pose the preview armature at the pose the start codes decode to. Raises a ``DanceError`` saying
    why it cannot (no SMPL armature, no model, codes out of range), the armature unchanged."""
    global LAST_PREVIEW_MS
    props = context.scene.dance
    obj = preview_target(context)
    if obj is None:
        raise core.errors.InvalidOptionError("No SMPL armature to preview on: generate a dance or select its armature")
    t0 = time.perf_counter()
    choreographer = core.get_choreographer(*prefs.engine_setup(context))
    joints = core.preview_joints(choreographer, props.start_up, props.start_down)
    core.pose_armature(obj, joints)
    LAST_PREVIEW_MS = (time.perf_counter() - t0) * 1000.0


def _on_start_code(self: Any, context: Any) -> None:
    if _PREVIEW_SUSPENDED or not self.live_preview:
        return
    try:  # a property update callback must not raise: the panel's status line says what went wrong
        preview_start_codes(context)
    except core.errors.DanceError as exc:
        context.window_manager.dance_job.status = str(exc)
        return
    context.window_manager.dance_job.status = f"Preview: codes ({self.start_up}, {self.start_down})"


def set_start_codes(context: Any, up: int, down: int) -> None:
    """Write both codes with a single preview (the update callback would otherwise run twice)."""
    global _PREVIEW_SUSPENDED
    props = context.scene.dance
    _PREVIEW_SUSPENDED = True
    try:
        props.start_up, props.start_down = int(up), int(down)
    finally:
        _PREVIEW_SUSPENDED = False
    _on_start_code(props, context)


# Blender keeps only pointers to the strings of dynamic enum items: the list must outlive the callback.
_STYLE_ITEMS: list[tuple[str, str, str]] = []


def style_items(self: Any, context: Any) -> list[tuple[str, str, str]]:
    """"Any" plus the styles of the model chosen in the preferences (read from its config.json)."""
    try:
        styles = core.model_styles(prefs.engine_setup(context)[0])
    except core.errors.DanceError:
        styles = []
    _STYLE_ITEMS[:] = [("any", "Any", "Whatever the model learnt from all its data")] + [
        (name, name.capitalize(), f"Dance in the {name} style of the model's training data") for name in styles]
    return _STYLE_ITEMS


def _is_armature(self: Any, obj: Any) -> bool:
    return obj.type == "ARMATURE"


class DANCE_PG_scene(PropertyGroup):
    song_path: StringProperty(  # type: ignore[valid-type]
        name="Song", subtype="FILE_PATH", description="Music to dance to (wav, mp3, ogg or flac)"
    )
    fps: EnumProperty(  # type: ignore[valid-type]
        name="Frame Rate",
        items=[("30", "30 fps", "Resampled from the model's 60 fps"), ("60", "60 fps", "The model's own rate"),
               ("24", "24 fps", "Film rate")],
        default="30",
    )
    style: EnumProperty(  # type: ignore[valid-type]
        name="Style", items=style_items,
        description="The dance style the model is asked for (the styles of its training data)",
    )
    style_guidance: FloatProperty(  # type: ignore[valid-type]
        name="Style Strength", min=0.0, max=10.0, soft_max=5.0, default=0.0,
        description="How strongly the style steers (0: the model's default, 2.5 for the default model; 1: as "
                    "trained; higher: a more distinct style, at twice the work)",
    )
    beat_sync: FloatProperty(  # type: ignore[valid-type]
        name="Beat Sync", subtype="FACTOR", min=0.0, max=1.0, default=1.0,
        description="Re-time the dance so its moves land on the song's beats (1: fully, 0: the model's own "
                    "timing). Poses and path stay the model's",
    )
    lock_feet: BoolProperty(  # type: ignore[valid-type]
        name="Lock Feet", default=True,
        description="Keep planted feet from sliding: the body moves over the planted foot, each foot stays on "
                    "its spot while planted and steps between spots (the legs bend to reach)",
    )
    # Starting pose codes: the first (upper, lower) token of the dance.
    use_start_codes: BoolProperty(  # type: ignore[valid-type]
        name="Custom Start Pose", description="Start from these codes instead of the model's default pair",
        default=False,
    )
    start_up: IntProperty(  # type: ignore[valid-type]
        name="Upper", description="Upper-body code of the first pose", min=0, soft_max=511, update=_on_start_code
    )
    start_down: IntProperty(  # type: ignore[valid-type]
        name="Lower", description="Lower-body code of the first pose", min=0, soft_max=511, update=_on_start_code
    )
    live_preview: BoolProperty(  # type: ignore[valid-type]
        name="Live Preview", description="Pose the armature whenever a code changes", default=True
    )
    # Sampling.
    decoding: EnumProperty(  # type: ignore[valid-type]
        name="Decoding",
        items=[("MODEL", "Model's Default", "How the model dances best (the default model samples at temperature "
                "1 from seed 0: the same dance for the same song; official checkpoints: greedy)"),
               ("GREEDY", "Greedy", "Always the most likely code (the official decoding)"),
               ("SAMPLE", "Sample", "Draw codes at this temperature and top-k, from this seed")],
        default="MODEL",
    )
    temperature: FloatProperty(  # type: ignore[valid-type]
        name="Temperature", description="Higher is wilder (sampling only)", default=1.0, min=0.05, max=5.0
    )
    top_k: IntProperty(  # type: ignore[valid-type]
        name="Top K", description="Sample among the K most likely codes (0: all)", default=0, min=0
    )
    seed: IntProperty(name="Seed", description="Random seed for sampling", default=0, min=0)  # type: ignore[valid-type]
    max_hold: FloatProperty(  # type: ignore[valid-type]
        name="Longest Hold", subtype="TIME_ABSOLUTE", unit="TIME_ABSOLUTE", min=0.0, soft_max=10.0, default=2.0,
        description="Longest time one code pair may repeat before the next most likely one is taken "
                    "(0: no limit, as the official sampler)",
    )
    variations: IntProperty(  # type: ignore[valid-type]
        name="Variations", description="How many actions 'Generate Variations' makes", default=3, min=2, max=16
    )
    # Target.
    target: EnumProperty(  # type: ignore[valid-type]
        name="Target",
        items=[("NEW", "New SMPL Armature", "Create a ready-to-render SMPL armature with a simple body"),
               ("SELECTED", "Selected Armature", "Apply to the active armature through a bone map preset")],
        default="NEW",
    )
    preset: EnumProperty(  # type: ignore[valid-type]
        name="Bone Map", items=[(p.label, p.label, f"{p.label} bone names") for p in rigmap.PRESETS.values()], default="SMPL"
    )
    with_mesh: BoolProperty(name="Body Mesh", description="Give a new armature a simple body", default=True)  # type: ignore[valid-type]
    armature: PointerProperty(  # type: ignore[valid-type]
        name="Armature", type=bpy.types.Object, poll=_is_armature,
        description="The armature the last generation was applied to",
    )
    # Render preview.
    render_engine: EnumProperty(  # type: ignore[valid-type]
        name="Engine",
        items=[("WORKBENCH", "Workbench", "Fast preview"), ("CYCLES", "Cycles (CPU)", "Slower, no GPU needed"),
               ("EEVEE", "EEVEE", "Needs OpenGL")],
        default="WORKBENCH",
    )
    render_width: IntProperty(name="Width", default=640, min=16, max=7680)  # type: ignore[valid-type]
    render_height: IntProperty(name="Height", default=360, min=16, max=4320)  # type: ignore[valid-type]


class DANCE_PG_job(PropertyGroup):
    running: BoolProperty(default=False)  # type: ignore[valid-type]
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")  # type: ignore[valid-type]
    status: StringProperty(name="Status", default="")  # type: ignore[valid-type]


class DANCE_PG_object(PropertyGroup):
    song_path: StringProperty(name="Song", subtype="FILE_PATH")  # type: ignore[valid-type]


CLASSES = (DANCE_PG_scene, DANCE_PG_job, DANCE_PG_object)


def register_properties() -> None:
    bpy.types.Scene.dance = PointerProperty(type=DANCE_PG_scene)  # type: ignore[attr-defined,func-returns-value]
    bpy.types.Object.dance = PointerProperty(type=DANCE_PG_object)  # type: ignore[attr-defined,func-returns-value]
    bpy.types.WindowManager.dance_job = PointerProperty(type=DANCE_PG_job)  # type: ignore[attr-defined,func-returns-value]


def unregister_properties() -> None:
    del bpy.types.WindowManager.dance_job  # type: ignore[attr-defined]
    del bpy.types.Object.dance  # type: ignore[attr-defined]
    del bpy.types.Scene.dance  # type: ignore[attr-defined]
