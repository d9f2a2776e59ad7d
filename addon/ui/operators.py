"""Operators: each gathers options from ``scene.dance`` and the preferences and calls plain functions
(``core``, the engine, the Blender layer). Generation runs in a worker thread (``jobs``); the scene is
changed only after the engine has finished, on the main thread, as one undo step.

``bpy.ops.dance.generate()`` from a script (``execute``) waits for the engine; from the UI (``invoke``)
it runs modally with a progress bar, and Esc or the panel's Cancel button stops it.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

import bpy
import numpy as np
from bpy.props import IntProperty, StringProperty
from bpy.types import Operator
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .. import _engine
from ..blender import partner as bl_partner
from . import core, jobs, prefs, props

errors = _engine.errors
TIMER_INTERVAL_S = 0.1


def _report_error(op: Operator, exc: BaseException, what: str) -> None:
    missing = prefs.missing_dependencies() if isinstance(exc, ImportError) else []
    if missing:  # torch or librosa not installed: say which, and where the button is
        op.report({"ERROR"}, f"{what} needs {' and '.join(missing)}, which this Blender does not have: open "
                             "Preferences > Add-ons > Bailando Dance and click 'Install torch and librosa'")
    elif isinstance(exc, errors.Cancelled):
        op.report({"WARNING"}, f"{what} cancelled; the scene is unchanged")
    elif isinstance(exc, errors.DanceError):
        op.report({"ERROR"}, f"{what} failed: {exc}")
    else:  # a bug: say so in one line, keep the traceback for the console
        traceback.print_exception(exc)
        op.report({"ERROR"}, f"{what} failed unexpectedly: {type(exc).__name__}: {exc} (see the system console)")


def _dance_armature(context: Any) -> Any | None:
    obj = context.active_object
    if obj is not None and obj.type == "ARMATURE":
        return obj
    return context.scene.dance.armature


def _song_of(context: Any, obj: Any) -> str | None:
    song = (obj.dance.song_path if obj is not None else "") or context.scene.dance.song_path
    return bpy.path.abspath(song) if song else None


def decoding_choice(settings: Any) -> dict[str, Any]:
    """The panel's decoding as ``build_options`` arguments: the model's default leaves all open."""
    if settings.decoding == "GREEDY":
        return {"greedy": True}
    if settings.decoding == "SAMPLE":
        return {"greedy": False, "temperature": settings.temperature, "top_k": settings.top_k or None,
                "seed": settings.seed}
    return {}


class DANCE_OT_load_song(Operator, ImportHelper):  # type: ignore[misc]
    """Add a song to the sequencer; the scene's frame rate and range follow it"""

    if TYPE_CHECKING:
        filepath: str  # ImportHelper's property

    bl_idname = "dance.load_song"
    bl_label = "Load Song"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default=";".join(f"*{e}" for e in _engine.audio.AUDIO_EXTENSIONS),  # type: ignore[valid-type]
                                options={"HIDDEN"})

    def execute(self, context: Any) -> jobs.OperatorResult:
        settings = context.scene.dance
        try:
            song = core.check_song(self.filepath)
            from ..blender import scene as bl_scene

            bl_scene.load_song(context.scene, song, fps=float(settings.fps))
        except (errors.DanceError, ImportError) as exc:
            _report_error(self, exc, "Loading the song")
            return {"CANCELLED"}
        settings.song_path = str(song)
        self.report({"INFO"}, f"Song {song.name}: frames {context.scene.frame_start}-{context.scene.frame_end}")
        return {"FINISHED"}


class _EngineJobOperator:
    """What every operator that runs the engine does alike: gather options on the main thread
    (``_gather``), run the engine in a worker thread (``_work``; progress in the panel, Esc cancels),
    then change the scene on the main thread as one undo step (``_apply``), or report why not.
    From a script (``execute``) it waits; from the UI (``invoke``) it runs modally."""

    what = "Generation"  # what the messages call it

    _job: jobs.Job | None = None
    _timer: Any = None
    _request: dict[str, Any] | None = None

    @classmethod
    def poll(cls, context: Any) -> bool:
        job = jobs.active()
        return job is None or job.done

    def _gather(self, context: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _work(self, request: dict[str, Any], progress: jobs.ProgressFn, cancel: jobs.CancelFn) -> Any:
        raise NotImplementedError

    def _apply(self, context: Any, result: Any, request: dict[str, Any]) -> tuple[str, bool]:
        """Change the scene; returns (message, whether it is a warning)."""
        raise NotImplementedError

    def _start(self, context: Any) -> bool:
        try:
            request = self._gather(context)
        except (errors.DanceError, ImportError) as exc:
            _report_error(self, exc, self.what)  # type: ignore[arg-type]
            return False

        def work(progress: jobs.ProgressFn, cancel: jobs.CancelFn) -> Any:
            return self._work(request, progress, cancel)

        try:
            self._job = jobs.Job(self.what.lower(), work).start()
        except jobs.JobBusyError as exc:
            self.report({"ERROR"}, str(exc))  # type: ignore[attr-defined]
            return False
        self._request = request
        job_props = context.window_manager.dance_job
        job_props.running, job_props.progress, job_props.status = True, 0.0, "Starting"
        return True

    def _finish(self, context: Any) -> jobs.OperatorResult:
        """Main thread, engine done: apply the result (one undo step) or report why not."""
        job, request = self._job, self._request
        assert job is not None and request is not None
        job.release()
        job_props = context.window_manager.dance_job
        job_props.running = False
        if job.error is not None:
            _report_error(self, job.error, self.what)  # type: ignore[arg-type]
            job_props.status = "Cancelled" if isinstance(job.error, errors.Cancelled) else f"Failed: {job.error}"
            return {"CANCELLED"}
        try:
            message, warning = self._apply(context, job.result, request)
        except Exception as exc:
            _report_error(self, exc, f"Applying the {self.what.lower()}")  # type: ignore[arg-type]
            job_props.status = f"Failed: {exc}"
            return {"CANCELLED"}
        job_props.progress, job_props.status = 1.0, f"Done: {message}"
        self.report({"WARNING"} if warning else {"INFO"}, message)  # type: ignore[attr-defined]
        return {"FINISHED"}

    # --- blocking (scripts, headless) ---------------------------------------------------------------
    def execute(self, context: Any) -> jobs.OperatorResult:
        if not self._start(context):
            return {"CANCELLED"}
        job = self._job
        assert job is not None
        job_props = context.window_manager.dance_job

        def poll(j: jobs.Job) -> None:
            job_props.progress, job_props.status = j.progress, j.message

        try:
            job.wait(poll=poll)
        except KeyboardInterrupt:
            job.cancel()
            job.wait()
        return self._finish(context)

    # --- interactive (UI stays responsive) ----------------------------------------------------------
    def invoke(self, context: Any, event: Any) -> jobs.OperatorResult:
        if context.window is None:  # no event loop to poll from (background mode)
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> jobs.OperatorResult:
        job = self._job
        assert job is not None
        if event.type == "ESC":
            job.cancel()
            return {"RUNNING_MODAL"}  # consumed; the timer finishes once the engine has stopped
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        job_props = context.window_manager.dance_job
        job_props.progress, job_props.status = job.progress, job.message
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if not job.done:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._finish(context)


class DANCE_OT_generate(_EngineJobOperator, Operator):
    """Generate a dance for the song in the background and key it as a new action"""

    bl_idname = "dance.generate"
    bl_label = "Generate Dance"
    bl_options = {"REGISTER", "UNDO"}

    variations: IntProperty(  # type: ignore[valid-type]
        name="Variations", description="How many actions to make (seeds seed, seed+1, ...)", default=1, min=1,
        max=16,
    )

    # --- options -> engine request ------------------------------------------------------------------
    def _gather(self, context: Any) -> dict[str, Any]:
        settings = context.scene.dance
        song = core.check_song(bpy.path.abspath(settings.song_path))
        model_dir, device = prefs.engine_setup(context)
        target = None
        if settings.target == "SELECTED":
            target = context.active_object
            if target is None or target.type != "ARMATURE":
                raise errors.InvalidOptionError("select the armature to apply the dance to (or target a new one)")
            core.check_target(target, settings.preset)  # a rig lacking bones fails now, not after the engine
        options = _engine.options.build_options(
            style=settings.style or "any", style_guidance=settings.style_guidance or None,
            start=(settings.start_up, settings.start_down) if settings.use_start_codes else None,
            **decoding_choice(settings), max_hold=settings.max_hold, beat_sync=settings.beat_sync,
            lock_feet=settings.lock_feet,
            fps=float(settings.fps),
            reserve_cores=1,  # Blender's own threads (the UI, the viewport) keep a core busy
        )
        if options.beat_sync is not None:
            options.beat_sync.check()  # a bad value fails here; the rest is checked against the model
        return {
            "song": song, "model_dir": model_dir, "device": device, "target": target,
            "preset": settings.preset, "with_mesh": settings.with_mesh,
            "options_list": _engine.options.variation_options(options, self.variations),
        }

    def _work(self, request: dict[str, Any], progress: jobs.ProgressFn, cancel: jobs.CancelFn) -> Any:
        return core.generate_dances(request["model_dir"], request["device"], request["song"],
                                    request["options_list"], progress=progress, cancel=cancel)

    def _apply(self, context: Any, result: Any, request: dict[str, Any]) -> tuple[str, bool]:
        applied = core.apply_dances(context.scene, result, request["song"], target=request["target"],
                                    preset=request["preset"], with_mesh=request["with_mesh"])
        obj = applied.armature
        context.scene.dance.armature = obj
        obj.dance.song_path = str(request["song"])
        if context.view_layer.objects.get(obj.name) is not None:
            context.view_layer.objects.active = obj
        return applied.message(), applied.stashed is not None or bool(applied.warnings)


class DANCE_OT_dance_with_partner(_EngineJobOperator, Operator):
    """Add a follower dancing with the selected armature's dance (its rig read through the bone map)"""

    bl_idname = "dance.dance_with_partner"
    bl_label = "Dance with this partner"
    bl_options = {"REGISTER", "UNDO"}
    what = "Partner"

    def _gather(self, context: Any) -> dict[str, Any]:
        scene, settings = context.scene, context.scene.dance
        leader = context.active_object
        if leader is None or leader.type != "ARMATURE":
            raise errors.InvalidOptionError("select the armature whose dance the partner follows")
        anim = leader.animation_data
        if anim is None or anim.action is None:
            raise errors.InvalidOptionError(f"{leader.name!r} has no action: key a dance on it first")
        fps = core.scene_frame_rate(scene)
        model_dir, device = prefs.engine_setup(context)
        preset = "smpl" if core.is_smpl_armature(leader) else settings.preset
        first, last = (int(v) for v in anim.action.frame_range)
        joints, scale = bl_partner.leader_joints(scene, leader, preset, range(first, last + 1))
        song = bpy.path.abspath(settings.song_path) if settings.song_path else None
        options = _engine.options.build_options(**decoding_choice(settings), fps=fps, reserve_cores=1)
        return {"model_dir": model_dir, "device": device, "joints": joints, "scale": scale, "fps": fps,
                "song": core.check_song(song) if song else None, "options": options, "first": first,
                "name": f"{leader.name} partner"}

    def _work(self, request: dict[str, Any], progress: jobs.ProgressFn, cancel: jobs.CancelFn) -> Any:
        leader = _engine.dance.Dance(joints=request["joints"], fps=request["fps"])
        return core.get_choreographer(request["model_dir"], request["device"]).accompany(
            leader, song=request["song"], options=request["options"], progress=progress, cancel=cancel)

    def _apply(self, context: Any, result: Any, request: dict[str, Any]) -> tuple[str, bool]:
        obj = bl_partner.add_follower(context.scene, result, request["name"], request["scale"], request["first"])
        if context.view_layer.objects.get(obj.name) is not None:
            context.view_layer.objects.active = obj
        return f"Added {obj.name!r}, dancing with the selection from frame {request['first']}", False


class DANCE_OT_cancel(Operator):
    """Stop the running generation; the scene stays as it was"""

    bl_idname = "dance.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    def execute(self, context: Any) -> jobs.OperatorResult:
        if not jobs.cancel_active():
            self.report({"INFO"}, "Nothing is running")
            return {"CANCELLED"}
        context.window_manager.dance_job.status = "Cancelling"
        return {"FINISHED"}


class DANCE_OT_preview_start(Operator):
    """Pose the armature at the pose the start codes decode to"""

    bl_idname = "dance.preview_start"
    bl_label = "Preview Start Pose"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: Any) -> jobs.OperatorResult:
        try:
            props.preview_start_codes(context)
        except errors.DanceError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class DANCE_OT_randomize_start(Operator):
    """Pick random start codes (and preview them)"""

    bl_idname = "dance.randomize_start"
    bl_label = "Randomize"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: Any) -> jobs.OperatorResult:
        try:
            choreographer = core.get_choreographer(*prefs.engine_setup(context))
        except (errors.DanceError, ImportError) as exc:
            _report_error(self, exc, "Randomize")
            return {"CANCELLED"}
        n_up, n_down = choreographer.vocab_sizes
        rng = np.random.default_rng()
        context.scene.dance.use_start_codes = True
        props.set_start_codes(context, int(rng.integers(n_up)), int(rng.integers(n_down)))
        return {"FINISHED"}


class DANCE_OT_start_from_pose(Operator):
    """Set the start codes to the code pair nearest the armature's current pose"""

    bl_idname = "dance.start_from_pose"
    bl_label = "From Current Pose"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: Any) -> jobs.OperatorResult:
        obj = props.preview_target(context)
        if obj is None:
            self.report({"ERROR"}, "Select an SMPL armature (one the add-on made) to read its pose")
            return {"CANCELLED"}
        try:
            choreographer = core.get_choreographer(*prefs.engine_setup(context))
            context.view_layer.update()  # pose bone heads reflect the latest edits
            up, down = core.encode_joints(choreographer, core.armature_pose_joints(obj))
        except (errors.DanceError, ImportError) as exc:
            _report_error(self, exc, "Reading the pose")
            return {"CANCELLED"}
        context.scene.dance.use_start_codes = True
        props.set_start_codes(context, up, down)
        self.report({"INFO"}, f"Start codes ({up}, {down})")
        return {"FINISHED"}


class _ExportDance(ExportHelper):
    """Shared by FBX and BVH: export the dance armature, with the song copied next to the file."""

    fmt = ""
    what = ""
    if TYPE_CHECKING:
        filepath: str  # ExportHelper's property

    @classmethod
    def poll(cls, context: Any) -> bool:
        return _dance_armature(context) is not None

    def execute(self, context: Any) -> jobs.OperatorResult:
        from ..blender import rig_export

        obj = _dance_armature(context)
        try:
            getattr(rig_export, f"export_{self.fmt}")(obj, self.filepath, song_path=_song_of(context, obj))
        except errors.DanceError as exc:
            _report_error(self, exc, self.what)  # type: ignore[arg-type]
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {self.filepath}")  # type: ignore[attr-defined]
        return {"FINISHED"}


class DANCE_OT_export_fbx(_ExportDance, Operator):  # type: ignore[misc]
    """Export the dance armature as FBX (the song is copied next to it)"""

    bl_idname = "dance.export_fbx"
    bl_label = "Export FBX"
    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})  # type: ignore[valid-type]
    fmt = "fbx"
    what = "FBX export"


class DANCE_OT_export_bvh(_ExportDance, Operator):  # type: ignore[misc]
    """Export the dance armature as BVH (the song is copied next to it)"""

    bl_idname = "dance.export_bvh"
    bl_label = "Export BVH"
    filename_ext = ".bvh"
    filter_glob: StringProperty(default="*.bvh", options={"HIDDEN"})  # type: ignore[valid-type]
    fmt = "bvh"
    what = "BVH export"


class DANCE_OT_render_preview(Operator, ExportHelper):  # type: ignore[misc]
    """Render the scene to an MP4 with the song (Workbench by default, Cycles CPU optional)"""

    if TYPE_CHECKING:
        filepath: str  # ExportHelper's property

    bl_idname = "dance.render_preview"
    bl_label = "Render MP4"
    filename_ext = ".mp4"
    filter_glob: StringProperty(default="*.mp4", options={"HIDDEN"})  # type: ignore[valid-type]

    def execute(self, context: Any) -> jobs.OperatorResult:
        from ..blender import render

        settings = context.scene.dance
        obj = _dance_armature(context)
        song = _song_of(context, obj)
        # Without a scene camera, the render frames the dancer (a camera made in the render's copy).
        dancer = obj if context.scene.camera is None else None
        try:
            render.render_mp4(context.scene, self.filepath, settings.render_engine,
                              (settings.render_width, settings.render_height), song, dancer=dancer)
        except errors.DanceError as exc:
            _report_error(self, exc, "Rendering")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {self.filepath}")
        return {"FINISHED"}


CLASSES = (
    DANCE_OT_load_song,
    DANCE_OT_generate,
    DANCE_OT_dance_with_partner,
    DANCE_OT_cancel,
    DANCE_OT_preview_start,
    DANCE_OT_randomize_start,
    DANCE_OT_start_from_pose,
    DANCE_OT_export_fbx,
    DANCE_OT_export_bvh,
    DANCE_OT_render_preview,
)
