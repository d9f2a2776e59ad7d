"""Panels and preferences: every drawn property and operator exists; dependency status and install.

The bpy module has no window to draw in, so ``draw`` runs against a recording layout that checks each
``prop`` against the real data and each ``operator`` against the registered operators.
"""

from __future__ import annotations

import sys
import threading

import pytest

bpy = pytest.importorskip("bpy")

from addon.ui import jobs, panels, prefs  # noqa: E402


class OperatorProps:
    """What ``layout.operator`` returns: accepts only the operator's own properties."""

    def __init__(self, idname: str):
        module, name = idname.split(".")
        self._props = {p.identifier for p in getattr(getattr(bpy.ops, module), name).get_rna_type().properties}

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            assert name in self._props, f"operator has no property {name!r}"
        object.__setattr__(self, name, value)


class RecordingLayout:
    def __init__(self, log: list):
        self.log = log
        self.active = True

    def _child(self, *args, **kwargs) -> RecordingLayout:
        return RecordingLayout(self.log)

    row = column = box = _child

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{data} has no property {name!r}"
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        assert name in dir(getattr(bpy.ops, module)), f"no operator {idname}"
        self.log.append(("operator", idname))
        return OperatorProps(idname)

    def label(self, text="", **kwargs):
        self.log.append(("label", text))

    def progress(self, **kwargs):
        self.log.append(("progress", kwargs.get("text")))


def draw(panel_cls, context) -> list:
    log: list = []
    layout = RecordingLayout(log)
    fake = type("FakePanel", (), {"layout": layout, "ui": lambda self: layout})()
    if hasattr(panel_cls, "draw_header"):
        panel_cls.draw_header(fake, context)
    panel_cls.draw(fake, context)
    return log


class FakePreferences:
    """Stands in for the preferences instance: real property definitions, a recording layout."""

    def __init__(self, real, log: list):
        self.bl_rna = real.bl_rna
        self.layout = RecordingLayout(log)


def test_sidebar_panels_draw_existing_properties_and_operators(enabled):
    bpy.ops.wm.read_homefile(use_empty=True)
    context = bpy.context
    for panel in panels.CLASSES:
        assert panel.bl_category == "Dance" and panel.bl_space_type == "VIEW_3D"
        assert draw(panel, context)
    main = draw(panels.DANCE_PT_main, context)
    assert ("operator", "dance.generate") in main and ("operator", "dance.load_song") in main
    context.scene.dance.target = "SELECTED"
    assert ("prop", "preset") in draw(panels.DANCE_PT_main, context)


def test_main_panel_shows_progress_and_cancel_while_running(enabled):
    bpy.ops.wm.read_homefile(use_empty=True)
    release = threading.Event()
    job = jobs.Job("test", lambda progress, cancel: release.wait(10)).start()
    try:
        job_props = bpy.context.window_manager.dance_job
        job_props.progress, job_props.status = 0.4, "Dancing: token 3/9"
        log = draw(panels.DANCE_PT_main, bpy.context)
        assert ("progress", "Dancing: token 3/9") in log and ("operator", "dance.cancel") in log
        assert ("operator", "dance.generate") not in log
        assert not bpy.ops.dance.generate.poll()  # one job at a time
    finally:
        release.set()
        job.wait()
        job.release()


def test_preferences_show_dependency_status(enabled, monkeypatch):
    log: list = []
    fake = FakePreferences(enabled, log)
    prefs.DANCE_AP_preferences.draw(fake, bpy.context)
    assert ("label", "torch: importable") in log and ("label", "librosa: importable") in log
    assert ("prop", "model_dir") in log and ("prop", "device") in log

    # Without librosa, offline (the bpy module's default): no install button, a clear message.
    monkeypatch.setattr(prefs, "missing_dependencies", lambda: ["librosa"])
    log.clear()
    prefs.DANCE_AP_preferences.draw(fake, bpy.context)
    assert ("label", "librosa: missing") in log
    assert ("operator", "dance.install_dependencies") not in log
    assert any("offline" in entry[1] for entry in log if entry[0] == "label")


def test_install_refuses_when_offline(enabled, monkeypatch, tmp_path):
    assert not bpy.app.online_access  # the bpy module starts offline
    monkeypatch.setattr(prefs, "deps_dir", lambda create=False: tmp_path / "deps")
    with pytest.raises(RuntimeError, match="Blender is offline: enable .*Allow Online Access"):
        bpy.ops.dance.install_dependencies()
    assert not (tmp_path / "deps").exists()


def test_pip_installs_into_the_user_folder_not_blender(tmp_path):
    import numpy

    command = prefs.pip_command(tmp_path / "deps")
    assert command[:3] == [sys.executable, "-m", "pip"]
    assert command[command.index("--target") + 1] == str(tmp_path / "deps")
    librosa = {(3, 11): "librosa==0.11.0", (3, 13): "librosa==1.0.0"}[sys.version_info[:2]]
    assert "torch==2.13.0" in command and librosa in command  # the versions tested with this Python
    assert f"numpy=={numpy.__version__}" in command  # resolved against Blender's own numpy


def test_the_numpy_pip_brings_along_is_removed_blenders_stays(tmp_path):
    target = tmp_path / "deps"
    for name in ("numpy", "numpy-1.26.4.dist-info", "numpy.libs", "numba", "torch"):
        (target / name).mkdir(parents=True)
    (target / "numpy" / "__init__.py").write_text("")
    assert prefs.drop_second_numpy(target) == ["numpy", "numpy-1.26.4.dist-info", "numpy.libs"]
    assert sorted(p.name for p in target.iterdir()) == ["numba", "torch"]


def test_install_runs_pip_in_the_background_when_online(enabled, monkeypatch, tmp_path):
    """Online: the operator returns at once; pip (here a stand-in command) runs in a job."""
    marker = tmp_path / "deps" / "installed.txt"

    def deps_dir(create=False):
        if create:
            (tmp_path / "deps").mkdir(exist_ok=True)
        return tmp_path / "deps"

    monkeypatch.setattr(prefs, "deps_dir", deps_dir)
    monkeypatch.setattr(prefs, "pip_command", lambda target: [
        sys.executable, "-c", f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ok')"])
    system = bpy.context.preferences.system
    monkeypatch.setattr(system, "use_online_access", True)
    assert bpy.app.online_access
    assert bpy.ops.dance.install_dependencies() == {"FINISHED"}
    job = jobs.active()
    assert job is not None and job.name == "install dependencies"
    assert bpy.context.window_manager.dance_job.status.startswith("Installing torch and librosa")
    job.wait(timeout=60)
    job.release()  # what the (here absent) event loop's timer does next
    assert job.error is None and marker.read_text() == "ok"


def test_the_bone_map_menu_offers_every_preset_the_rig_map_has(enabled):
    from addon.blender import rigmap

    items = bpy.context.scene.dance.bl_rna.properties["preset"].enum_items
    assert [item.identifier for item in items] == ["SMPL", "Mixamo", "Rigify"]
    for item in items:  # each resolves to its preset
        assert rigmap.get_preset(item.identifier) is rigmap.PRESETS[item.identifier.lower()]


def test_missing_torch_names_it_and_points_to_the_install_button(enabled, monkeypatch, short_song):
    """Without torch, Generate says what is missing and where to get it (not 'ModuleNotFoundError')."""
    from addon.ui import core

    def no_torch(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(prefs, "missing_dependencies", lambda: ["torch"])
    monkeypatch.setattr(core, "resolve_model_dir", no_torch)
    bpy.context.scene.dance.song_path = str(short_song(2.0))
    with pytest.raises(RuntimeError, match="needs torch.*Install torch and librosa") as raised:
        bpy.ops.dance.generate()
    assert "ModuleNotFoundError" not in str(raised.value)


def test_no_timer_or_thread_of_the_add_on_outlives_its_unregister(enabled, tmp_path):
    """An install running when the add-on is disabled: its pip process is stopped, its thread ends and
    its timer is gone (a timer left behind deadlocks bpy 4.5 at exit and crashes 4.2)."""
    import addon_utils

    from addon.ui import jobs

    slow_pip = [sys.executable, "-c", "import time; time.sleep(60)"]
    job = prefs.start_install(bpy.context, tmp_path / "deps", slow_pip)
    timers = list(prefs._TIMERS)
    assert timers and all(bpy.app.timers.is_registered(t) for t in timers) and not job.done
    addon_utils.disable("addon", default_set=True)
    try:
        assert job.done and isinstance(job.error, __import__("engine").errors.Cancelled)
        assert not any(bpy.app.timers.is_registered(t) for t in timers)
        assert not [t for t in threading.enumerate() if t.name.startswith("dance-") and t.is_alive()]
        assert jobs.active() is None
    finally:
        addon_utils.enable("addon", default_set=True, handle_error=None)
