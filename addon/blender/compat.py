"""Everything that differs between the Blender versions the add-on supports (4.2 LTS to 5.0).

Keep version checks here so the other modules read the same on every version:

- actions: 4.2/4.3 have flat ``action.fcurves``; 4.4/4.5 add slots/layers/channelbags and keep
  ``action.fcurves`` as a proxy onto the first slot; 5.0 removed ``action.fcurves`` (channelbags only).
- EEVEE's engine id: ``BLENDER_EEVEE_NEXT`` in 4.2-4.5, ``BLENDER_EEVEE`` from 5.0.
- video output: 5.0 needs ``image_settings.media_type = 'VIDEO'`` before ``file_format = 'FFMPEG'``.
- sequencer: ``sequence_editor.strips`` from 4.4 (``sequences`` removed in 5.0); a strip's length is
  ``duration`` in newer versions (``frame_final_duration`` is deprecated there).
- audio: the PyPI bpy 4.2 build has no Audaspace, so no sound strips (``has_audio``).
"""

from __future__ import annotations

from typing import Any, cast

import bpy

VERSION: tuple[int, int, int] = bpy.app.version  # a plain tuple on every supported version

HAS_SLOTTED_ACTIONS = VERSION >= (4, 4, 0)
HAS_CHANNELBAGS_ONLY = VERSION >= (5, 0, 0)  # Action.fcurves is gone

# KeyframePoint.interpolation enum values as foreach_set wants them.
INTERPOLATION_LINEAR = 1


def eevee_engine_id() -> str:
    return "BLENDER_EEVEE" if VERSION >= (5, 0, 0) else "BLENDER_EEVEE_NEXT"


def render_engine_id(engine: str) -> str:
    """User-facing engine name ('WORKBENCH', 'EEVEE', 'CYCLES') -> this Blender's identifier."""
    key = engine.upper()
    if key in ("EEVEE", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"):
        return eevee_engine_id()
    if key in ("WORKBENCH", "BLENDER_WORKBENCH"):
        return "BLENDER_WORKBENCH"
    if key == "CYCLES":
        return "CYCLES"
    raise ValueError(f"unknown render engine {engine!r}: use WORKBENCH, EEVEE or CYCLES")


def set_video_output(image_settings: Any) -> None:
    """Switch an ImageFormatSettings to FFMPEG video output on any version."""
    if hasattr(image_settings, "media_type"):  # 5.0+: FFMPEG is not accepted while media_type is IMAGE
        image_settings.media_type = "VIDEO"
    image_settings.file_format = "FFMPEG"


def sequencer_strips(scene: Any) -> Any:
    """The scene's top-level sequencer strip collection (created when missing)."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def strip_duration(strip: Any) -> int:
    """A strip's length in frames between its handles: ``duration`` where it exists (newer Blender),
    else ``frame_final_duration`` (deprecated there, to be removed in 6.0)."""
    if hasattr(strip, "duration"):
        return int(strip.duration)
    return int(strip.frame_final_duration)


def has_audio() -> bool:
    """False on builds without Audaspace (the PyPI bpy 4.2 wheel): sound strips cannot be added."""
    return bool(getattr(bpy.app.build_options, "audaspace", True))


# --- actions -----------------------------------------------------------------------------------------
STASH_TRACK_NAME = "[Action Stash]"  # the name Blender's own "Stash" gives its muted NLA tracks


def stash_action(obj: Any, action: Any) -> Any:
    """Keep ``action`` on ``obj`` as a strip of a new muted NLA track (what the Action editor's "Stash"
    does): it keeps a user, so it is saved with the file, and it does not play. Returns the strip."""
    anim = obj.animation_data or obj.animation_data_create()
    track = anim.nla_tracks.new()
    track.name = STASH_TRACK_NAME
    start = int(action.frame_range[0])
    strip = track.strips.new(action.name, start, action)
    if HAS_SLOTTED_ACTIONS and strip.action_slot is None and len(action.slots):
        strip.action_slot = action.slots[0]
    track.mute = True
    return strip


def would_be_orphaned(action: Any) -> bool:
    """True when ``action``'s only user is the object it is active on (no fake user, no NLA strip, no
    other object): replacing it there would leave it to be deleted at the next save and reload."""
    return action.users <= 1 and not action.use_fake_user


def assign_new_action(obj: Any, action: Any) -> None:
    """Make ``action`` the object's active action, with a slot on versions that have slots.

    On 4.4/4.5 a legacy ``action.fcurves.new`` on an action without an assigned slot creates a slot
    but does not assign it, and the animation silently does not play; so create and assign it here.

    The action it replaces is never orphaned: when nothing else uses it (no fake user, no NLA strip,
    no other object), Blender would delete it at the next save and reload, so it is stashed in the NLA
    first (``stash_action``).
    """
    anim = obj.animation_data or obj.animation_data_create()
    previous = anim.action
    if previous is not None and previous != action and would_be_orphaned(previous):
        stash_action(obj, previous)
    anim.action = action
    if HAS_SLOTTED_ACTIONS and anim.action_slot is None:
        anim.action_slot = action.slots.new(id_type="OBJECT", name=obj.name)


def new_fcurve(obj: Any, action: Any, data_path: str, index: int, group: str) -> Any:
    """Create (or get) the F-curve ``data_path[index]`` of ``obj`` in ``action`` (already assigned)."""
    if HAS_CHANNELBAGS_ONLY:
        return action.fcurve_ensure_for_datablock(obj, data_path, index=index, group_name=group)
    # 4.2/4.3: flat action; 4.4/4.5: legacy proxy onto the assigned first slot.
    existing = action.fcurves.find(data_path, index=index)
    if existing is not None:
        return existing
    return action.fcurves.new(data_path, index=index, action_group=group)


def action_fcurves(action: Any, obj: Any | None = None) -> list[Any]:
    """All F-curves of ``action`` (for ``obj``'s slot when given, else the first slot)."""
    if not HAS_CHANNELBAGS_ONLY:
        return list(action.fcurves)
    from bpy_extras import anim_utils

    slot = None
    if obj is not None and obj.animation_data is not None and obj.animation_data.action == action:
        slot = obj.animation_data.action_slot
    if slot is None and len(action.slots):
        slot = action.slots[0]
    if slot is None:
        return []
    # The stubs declare "-> None"; the function returns the slot's ActionChannelbag (or None).
    bag = anim_utils.action_get_channelbag_for_slot(action, slot)  # type: ignore[func-returns-value]
    return list(bag.fcurves) if bag is not None else []


def plain_material(name: str, rgba: tuple[float, float, float, float], roughness: float = 0.5) -> Any:
    """A material of one colour in every engine, reused by name: the viewport colour (what Workbench
    draws) and the Principled BSDF's base colour (EEVEE, Cycles). Materials before 5.0 start without nodes."""
    material = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    material.diffuse_color = rgba
    material.roughness = roughness
    if VERSION < (5, 0, 0) and not material.use_nodes:  # use_nodes is deprecated from 5.0 (always on)
        material.use_nodes = True
    tree = material.node_tree
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None) if tree is not None else None
    if bsdf is not None:
        cast(Any, bsdf.inputs["Base Color"]).default_value = rgba  # a colour socket
        cast(Any, bsdf.inputs["Roughness"]).default_value = roughness  # a float socket
    return material
