"""Add-on preferences: model folder, CPU/GPU, and whether torch and librosa can be imported, with an
"Install" button that pip-installs them into the extension's user folder (only with online access)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy.types import AddonPreferences, Operator

from .. import _engine, dependencies
from . import jobs

# "addon" in the repository, "bl_ext.user_default.bailando_dance" once installed.
ADDON_PACKAGE = __package__.rpartition(".")[0] if __package__ else "addon"
DEPENDENCIES = dependencies.IMPORT_NAMES
# What "Install" asks pip for: the versions tested on this Blender's Python (see ``dependencies``);
# numpy is pinned to Blender's own (see ``pip_command``), never installed twice.
PIP_REQUIREMENTS = dependencies.requirements(sys.version_info[:2])


class _Defaults:
    """What ``get`` returns when the add-on was registered without the add-on system (tests, batch)."""

    model_dir = ""
    device = "CPU"


def get(context: Any = None) -> Any:
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None and addon.preferences is not None else _Defaults()


def engine_setup(context: Any = None) -> tuple[Path, str]:
    """(model folder, torch device) from the preferences; raises a ``DanceError`` a user can act on."""
    from . import core

    addon_prefs = get(context)
    chosen = bpy.path.abspath(addon_prefs.model_dir) if addon_prefs.model_dir else ""
    return core.resolve_model_dir(chosen), core.torch_device(addon_prefs.device)


# --- dependencies ----------------------------------------------------------------------------------
def deps_dir(create: bool = False) -> Path:
    """Where "Install" puts torch and librosa: the extension's user folder (kept across updates)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="deps", create=create))
    except ValueError:  # not installed as an extension (running from the repository)
        return Path(bpy.utils.user_resource("SCRIPTS", path=os.path.join("dance_deps"), create=create))


def add_deps_to_path() -> None:
    folder = deps_dir()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))  # appended: Blender's own numpy keeps priority


def missing_dependencies() -> list[str]:
    return [name for name in DEPENDENCIES if importlib.util.find_spec(name) is None]


def pip_command(target: Path) -> list[str]:
    """pip installing the dependencies into ``target``, resolved against Blender's own numpy version (so
    every package works with the numpy Blender loads), CPU-only torch first."""
    import numpy

    return [sys.executable, "-m", "pip", "install", "--upgrade", "--target", str(target),
            "--extra-index-url", dependencies.TORCH_CPU_INDEX, *PIP_REQUIREMENTS, f"numpy=={numpy.__version__}"]


def drop_second_numpy(target: Path) -> list[str]:
    """Remove the numpy pip put into ``target`` (the same version as Blender's, which stays first on the
    path): one numpy in the process, never two. Returns what was removed."""
    removed = []
    for entry in sorted(target.glob("numpy*")):
        if entry.name == "numpy" or entry.name.startswith(("numpy-", "numpy.libs")):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    return removed


class DANCE_OT_install_dependencies(Operator):
    """Install torch and librosa into this add-on's user folder (downloads about 200 MB)"""

    bl_idname = "dance.install_dependencies"
    bl_label = "Install torch and librosa"
    bl_options = {"INTERNAL"}

    def execute(self, context: Any) -> jobs.OperatorResult:
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Blender is offline: enable Preferences > System > Network > Allow Online "
                                   "Access, or install torch and librosa yourself")
            return {"CANCELLED"}
        target = deps_dir(create=True)
        try:
            start_install(context, target, pip_command(target))
        except jobs.JobBusyError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Installing torch and librosa into {target} in the background")
        return {"FINISHED"}


# Timers this add-on registered (bpy.app.timers): unregistered with the add-on, so none outlives it.
_TIMERS: list[Callable[[], float | None]] = []


def register_timer(function: Callable[[], float | None], first_interval: float) -> None:
    _TIMERS.append(function)
    bpy.app.timers.register(function, first_interval=first_interval)


def unregister_timers() -> None:
    while _TIMERS:
        function = _TIMERS.pop()
        if bpy.app.timers.is_registered(function):
            bpy.app.timers.unregister(function)


def start_install(context: Any, target: Path, command: list[str]) -> jobs.Job:
    """Run ``command`` (pip) in a background job, polled by a timer that reports the outcome in the panel.
    Cancelling the job (or disabling the add-on) stops pip."""

    def work(progress: jobs.ProgressFn, cancel: jobs.CancelFn) -> str:
        progress(0.0, f"pip install into {target}")
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            while proc.poll() is None:
                if cancel():
                    proc.kill()
                    proc.wait()
                    raise _engine.errors.Cancelled("installing torch and librosa was cancelled")
                time.sleep(0.1)
            stderr = proc.stderr.read() if proc.stderr is not None else ""
        if proc.returncode != 0:
            raise RuntimeError(stderr.strip().splitlines()[-1] if stderr.strip() else "pip failed")
        drop_second_numpy(target)
        return str(target)

    job = jobs.Job("install dependencies", work).start()
    status = context.window_manager.dance_job
    status.running, status.status = True, "Installing torch and librosa (this takes a few minutes)"

    def poll() -> float | None:  # bpy.app.timers: runs on the main thread while Blender is idle
        if not job.done:
            return 0.5
        job.release()
        window_manager: Any = bpy.context.window_manager  # looked up again: a file load replaces it
        wm_status = window_manager.dance_job
        wm_status.running = False
        if job.error is not None:
            wm_status.status = f"Installing torch and librosa failed: {job.error}"
        else:
            add_deps_to_path()
            importlib.invalidate_caches()
            wm_status.status = f"Installed torch and librosa into {target}; restart Blender if imports fail"
        return None

    register_timer(poll, first_interval=0.5)
    return job


class DANCE_AP_preferences(AddonPreferences):
    bl_idname = ADDON_PACKAGE

    model_dir: StringProperty(  # type: ignore[valid-type]
        name="Model Folder", subtype="DIR_PATH",
        description="A model folder (config.json + weights); empty uses the embedded default model",
    )
    device: EnumProperty(  # type: ignore[valid-type]
        name="Device",
        items=[("CPU", "CPU", "Works everywhere"), ("GPU", "GPU", "CUDA or Apple Metal, when torch sees one")],
        default="CPU",
    )

    def draw(self, context: Any) -> None:
        layout = self.layout
        assert layout is not None  # Blender sets it before calling draw
        layout.prop(self, "model_dir")
        layout.prop(self, "device", expand=True)
        box = layout.box()
        box.label(text="Dependencies")
        missing = missing_dependencies()
        for name in DEPENDENCIES:
            ok = name not in missing
            box.label(text=f"{name}: {'importable' if ok else 'missing'}", icon="CHECKMARK" if ok else "ERROR")
        job_status = context.window_manager.dance_job.status
        if job_status.startswith("Install"):
            box.label(text=job_status, icon="INFO")
        if missing:
            if bpy.app.online_access:
                box.operator(DANCE_OT_install_dependencies.bl_idname, icon="IMPORT")
                box.label(text=f"Installs into {deps_dir()}")
            else:
                box.label(text="Blender is offline: allow online access (Preferences > System) to install",
                          icon="INFO")


CLASSES = (DANCE_OT_install_dependencies, DANCE_AP_preferences)
