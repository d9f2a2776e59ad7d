"""The 3D viewport sidebar's "Dance" tab: song, start pose, sampling, target, generate, export, render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.types import Panel, UILayout

from . import jobs, operators, prefs


class _DancePanel(Panel):
    """Shared placement (never registered itself)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Dance"

    def ui(self) -> UILayout:
        assert self.layout is not None  # Blender sets it before calling draw
        return self.layout


class DANCE_PT_main(_DancePanel):
    bl_label = "Dance"
    bl_idname = "DANCE_PT_main"

    def draw(self, context: Any) -> None:
        layout = self.ui()
        settings = context.scene.dance
        job_props = context.window_manager.dance_job

        # Picking goes through the operator, which also adds the sound strip and sets fps and range.
        song = Path(bpy.path.abspath(settings.song_path)).name if settings.song_path else "No song"
        row = layout.row(align=True)
        row.label(text=song, icon="SOUND")
        row.operator(operators.DANCE_OT_load_song.bl_idname, text="", icon="FILEBROWSER")
        layout.prop(settings, "fps")
        layout.prop(settings, "style")
        layout.prop(settings, "beat_sync")
        layout.prop(settings, "lock_feet")
        missing = prefs.missing_dependencies()
        if missing:
            layout.label(text=f"Missing: {', '.join(missing)} (see the add-on preferences)", icon="ERROR")

        col = layout.column(heading="Target")
        col.prop(settings, "target", text="")
        if settings.target == "SELECTED":
            col.prop(settings, "preset")
        else:
            col.prop(settings, "with_mesh")

        running = jobs.active() is not None and not jobs.active().done  # type: ignore[union-attr]
        if running or job_props.running:
            layout.progress(factor=job_props.progress, type="BAR", text=job_props.status or "Working")
            layout.operator(operators.DANCE_OT_cancel.bl_idname, icon="CANCEL")
        else:
            layout.operator(operators.DANCE_OT_generate.bl_idname, icon="PLAY").variations = 1
            row = layout.row(align=True)
            row.operator(operators.DANCE_OT_generate.bl_idname, text="Generate Variations",
                         icon="DUPLICATE").variations = settings.variations
            row.prop(settings, "variations", text="")
            if job_props.status:
                layout.label(text=job_props.status)


class DANCE_PT_start_pose(_DancePanel):
    bl_label = "Starting Pose"
    bl_parent_id = "DANCE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context: Any) -> None:
        self.ui().prop(context.scene.dance, "use_start_codes", text="")

    def draw(self, context: Any) -> None:
        layout = self.ui()
        settings = context.scene.dance
        layout.active = settings.use_start_codes
        row = layout.row(align=True)
        row.prop(settings, "start_up")
        row.prop(settings, "start_down")
        layout.prop(settings, "live_preview")
        row = layout.row(align=True)
        row.operator(operators.DANCE_OT_randomize_start.bl_idname, icon="FILE_REFRESH")
        row.operator(operators.DANCE_OT_start_from_pose.bl_idname, icon="ARMATURE_DATA")
        layout.operator(operators.DANCE_OT_preview_start.bl_idname, icon="HIDE_OFF")


class DANCE_PT_sampling(_DancePanel):
    bl_label = "Sampling"
    bl_parent_id = "DANCE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.ui()
        settings = context.scene.dance
        layout.prop(settings, "decoding")
        col = layout.column()
        col.active = settings.decoding == "SAMPLE"
        col.prop(settings, "temperature")
        col.prop(settings, "top_k")
        col.prop(settings, "seed")
        layout.prop(settings, "style_guidance")
        layout.prop(settings, "max_hold")


class DANCE_PT_output(_DancePanel):
    bl_label = "Export & Render"
    bl_parent_id = "DANCE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.ui()
        settings = context.scene.dance
        row = layout.row(align=True)
        row.operator(operators.DANCE_OT_export_fbx.bl_idname, icon="EXPORT")
        row.operator(operators.DANCE_OT_export_bvh.bl_idname, icon="EXPORT")
        layout.prop(settings, "render_engine")
        row = layout.row(align=True)
        row.prop(settings, "render_width")
        row.prop(settings, "render_height")
        layout.operator(operators.DANCE_OT_render_preview.bl_idname, icon="RENDER_ANIMATION")


class DANCE_PT_duet(_DancePanel):
    bl_label = "Duet"
    bl_parent_id = "DANCE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.ui()
        obj = context.active_object
        col = layout.column()
        if obj is None or obj.type != "ARMATURE" or obj.animation_data is None or obj.animation_data.action is None:
            col.label(text="Select an armature with a dance", icon="INFO")
        else:
            col.label(text=f"Leader: {obj.name}", icon="ARMATURE_DATA")
        col.label(text="The follower hears the song above, or the leader's beats")
        layout.operator(operators.DANCE_OT_dance_with_partner.bl_idname, icon="COMMUNITY")


CLASSES = (DANCE_PT_main, DANCE_PT_start_pose, DANCE_PT_sampling, DANCE_PT_duet, DANCE_PT_output)
