"""build_addon.py: the extension zip passes Blender's validation, installs headlessly, registers and
generates with its vendored engine (child process: BLENDER_USER_RESOURCES must be set before bpy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import build_addon
from tests.addon.conftest import blender_has_audio

pytest.importorskip("bpy")  # the builder script ships inside the bpy module

EXTENSION_ID = "bailando_dance"

# Runs in a fresh interpreter: install the zip into a temp user folder, then drive the operators.
INSTALL_AND_GENERATE = r"""
import json, sys
import bpy

zip_path, model_dir, song = sys.argv[1:4]
out = {}
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
pkg = "bl_ext.user_default.bailando_dance"
module = sys.modules[pkg]
out["package_file"] = module.__file__
out["engine_package"] = sys.modules[pkg + "._engine"].ENGINE_PACKAGE
out["engine_file"] = sys.modules[out["engine_package"]].__file__
prefs = bpy.context.preferences.addons[pkg].preferences
prefs.model_dir = model_dir
out["deps_dir"] = str(sys.modules[pkg + ".ui.prefs"].deps_dir())

bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
scene.dance.song_path = song
bpy.ops.ed.undo_push(message="before")
state = lambda: [sorted(o.name for o in bpy.data.objects), sorted(a.name for a in bpy.data.actions),
                 scene.sequence_editor is not None and len(sys.modules[pkg + ".blender.compat"].sequencer_strips(scene))]
out["before"] = state()
out["result"] = sorted(bpy.ops.dance.generate("EXEC_DEFAULT", True))
obj = scene.dance.armature
out["action"] = obj.animation_data.action.name
out["frames"] = [scene.frame_start, scene.frame_end]
out["after"] = state()
window = bpy.context.window_manager.windows[0]
with bpy.context.temp_override(window=window, screen=window.screen):
    bpy.ops.ed.undo()
scene = bpy.context.scene
out["undone"] = state()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    (path,) = build_addon.build(tmp_path_factory.mktemp("dist"))
    return path


def test_zip_holds_addon_engine_and_manifest(built_zip):
    assert built_zip.name == f"{EXTENSION_ID}-0.1.0.zip"
    names = set(zipfile.ZipFile(built_zip).namelist())
    for required in ("blender_manifest.toml", "__init__.py", "_engine.py", "ui/operators.py", "batch.py",
                     "blender/keyframes.py", "engine/__init__.py", "engine/generate.py",
                     "engine/models/vqvae.py"):
        assert required in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    has_model = (build_addon.DEFAULT_MODEL_DIR / "config.json").is_file()
    assert ("assets/default_model/config.json" in names) == has_model


def test_zip_passes_blender_validation(built_zip):
    done = subprocess.run([sys.executable, str(build_addon.find_blender_ext()), "validate", str(built_zip)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = zipfile.ZipFile(built_zip).read("blender_manifest.toml").decode()
    assert 'blender_version_min = "4.2.0"' in manifest


def test_bundled_wheels_are_listed_in_the_manifest(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    names = ("tinydep-1.0-py3-none-any.whl", "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl",
             "fastdep-2.0-cp311-cp311-manylinux_2_28_x86_64.whl", "fastdep-2.0-cp311-cp311-win_amd64.whl")
    for name in names:
        with zipfile.ZipFile(wheels / name, "w") as wheel:
            wheel.writestr("tinydep/__init__.py", "")
    zips = {p.name: p for p in build_addon.build(tmp_path / "dist", wheel_dir=wheels, with_model=False)}
    # Binary wheels for two platforms: one zip each, holding the pure wheel and its own binary one.
    assert sorted(zips) == [f"{EXTENSION_ID}-0.1.0-linux_x64.zip", f"{EXTENSION_ID}-0.1.0-windows_x64.zip"]
    for platform, binary in (("linux_x64", names[2]), ("windows_x64", names[3])):
        archive = zipfile.ZipFile(zips[f"{EXTENSION_ID}-0.1.0-{platform}.zip"])
        wheel_files = sorted(n for n in archive.namelist() if n.startswith("wheels/"))
        assert wheel_files == sorted([f"wheels/{names[0]}", f"wheels/{binary}"])
        manifest = archive.read("blender_manifest.toml").decode()
        assert f"./wheels/{names[0]}" in manifest
        assert "wheels/numpy" not in manifest  # Blender ships its own numpy


def test_wheel_platform_tags():
    assert build_addon.wheel_platforms("x-1-py3-none-any.whl") == set()
    assert build_addon.wheel_platforms("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl") == {"linux-x64"}
    assert build_addon.wheel_platforms("x-1-cp311-cp311-macosx_11_0_universal2.whl") == {"macos-arm64",
                                                                                       "macos-x64"}
    assert build_addon.wheel_platforms("x-1-cp311-cp311-win_amd64.whl") == {"windows-x64"}


def test_builder_failure_is_one_clear_error(tmp_path):
    broken = tmp_path / "blender_ext.py"
    broken.write_text("import sys; print('manifest invalid'); sys.exit(1)\n")
    with pytest.raises(build_addon.BuildError, match="manifest invalid"):
        build_addon.build(tmp_path / "dist", blender_ext=broken)
    assert not list((tmp_path / "dist").glob("*.zip"))


def test_installed_extension_registers_and_generates(built_zip, tiny_model_dir, short_song, tmp_path):
    song = short_song(2.0, name="installed clip")
    user = tmp_path / "blender_user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    done = subprocess.run(
        [sys.executable, "-c", INSTALL_AND_GENERATE, str(built_zip), str(tiny_model_dir), str(song)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    # Installed into the temp user folder, running its own vendored engine.
    assert Path(out["package_file"]).is_relative_to(user)
    assert out["engine_package"] == f"bl_ext.user_default.{EXTENSION_ID}.engine"
    assert Path(out["engine_file"]).is_relative_to(user)
    assert Path(out["deps_dir"]).is_relative_to(user)
    # One generation: a new armature + body, an action named after the song, the song strip.
    assert out["result"] == ["FINISHED"]
    assert out["action"] == "installed clip"
    assert out["before"] == [[], [], False]
    objects, actions, strips = out["after"]
    assert actions == ["installed clip"] and len(objects) == 2
    assert strips == (1 if blender_has_audio() else False)  # no sound strip where bpy has no audio
    assert out["undone"] == out["before"]
