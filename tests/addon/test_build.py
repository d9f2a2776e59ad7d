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
from packaging.requirements import Requirement

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


# --- bundled dependencies (build_addon.py --wheels) -----------------------------------------------------
def _write_wheel(folder: Path, name: str, module: str = "", requires: tuple[str, ...] = ()) -> Path:
    """A minimal valid wheel: a module that knows its version, and METADATA with ``requires``."""
    project, version = name.split("-")[:2]
    info = f"{project}-{version}.dist-info"
    path = folder / name
    with zipfile.ZipFile(path, "w") as wheel:
        if module:
            wheel.writestr(f"{module}/__init__.py", f"VERSION = {version!r}\n")
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            project, version, "".join(f"Requires-Dist: {r}\n" for r in requires)))
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


def test_torch_requirements_are_judged_for_the_target_platform_and_python(tmp_path):
    # pip download --platform judges markers by the machine it runs on; a Windows bundle built on Linux
    # would pull the CUDA wheels, and a 3.11 bundle built on 3.13 setuptools.
    wheel = _write_wheel(tmp_path, "torch-2.13.0-cp311-cp311-win_amd64.whl", requires=(
        "filelock", "sympy>=1.13.3", "setuptools; python_version >= '3.12'",
        "nvidia-cudnn-cu13==9.20.0.48; platform_system == 'Linux' and platform_machine == 'x86_64'",
        "opt-einsum>=3.3; extra == 'opt-einsum'"))
    assert build_addon.wheel_requirements(wheel, "windows-x64", (3, 11)) == ["filelock", "sympy>=1.13.3"]
    assert build_addon.wheel_requirements(wheel, "macos-arm64", (3, 13)) == ["filelock", "sympy>=1.13.3",
                                                                            "setuptools"]
    linux = build_addon.wheel_requirements(wheel, "linux-x64", (3, 13))
    assert linux[-1] == "nvidia-cudnn-cu13==9.20.0.48"
    cuda = [r for r in linux if build_addon.dependencies.is_cuda_project(Requirement(r).name)]
    assert cuda == ["nvidia-cudnn-cu13==9.20.0.48"]  # what download_wheels refuses


def test_each_blender_python_gets_the_set_pip_resolved_for_it(tmp_path):
    # What pip resolved for one platform (names as on PyPI): librosa and networkx differ between the
    # Pythons, audioread is needed on 3.11 only, soxr is a cp311 wheel and an abi3 wheel for 3.12+.
    resolved = {
        (3, 11): ["librosa-0.11.0-py3-none-any.whl", "networkx-3.6.1-py3-none-any.whl",
                  "audioread-3.1.0-py3-none-any.whl", "sympy-1.14.0-py3-none-any.whl",
                  "soxr-1.1.0-cp311-cp311-win_amd64.whl", "torch-2.13.0-cp311-cp311-win_amd64.whl"],
        (3, 13): ["librosa-1.0.0-py3-none-any.whl", "networkx-3.7-py3-none-any.whl",
                  "sympy-1.14.0-py3-none-any.whl", "soxr-1.1.0-cp312-abi3-win_amd64.whl",
                  "torch-2.13.0-cp313-cp313-win_amd64.whl"],
    }
    sets = {}
    for python, names in resolved.items():
        folder = tmp_path / f"cp{python[0]}{python[1]}"
        folder.mkdir()
        sets[python] = [_write_wheel(folder, name) for name in names]
    dest = tmp_path / "merged"
    dest.mkdir()
    merged = sorted(p.name for p in build_addon.merge_python_sets(sets, dest))
    assert merged == sorted(p.name for p in dest.iterdir())
    # Shared pure wheels keep their names; the others say which Python they are for.
    assert "sympy-1.14.0-py3-none-any.whl" in merged
    assert {"librosa-0.11.0-py311-none-any.whl", "librosa-1.0.0-py313-none-any.whl",
            "audioread-3.1.0-py311-none-any.whl", "networkx-3.7-py313-none-any.whl"} <= set(merged)
    # What Blender installs on each Python (newest fitting version per project) is that Python's set.
    on_311 = build_addon.blender_selection(merged, (3, 11))
    on_313 = build_addon.blender_selection(merged, (3, 13))
    assert [n.split("-")[:2] for n in on_311] == sorted(n.split("-")[:2] for n in resolved[(3, 11)])
    assert [n.split("-")[:2] for n in on_313] == sorted(n.split("-")[:2] for n in resolved[(3, 13)])
    # Without the renaming, Blender on 3.11 would take librosa 1.0 (which needs Python 3.12).
    plain = [n for names in resolved.values() for n in names]
    assert "librosa-1.0.0-py3-none-any.whl" in build_addon.blender_selection(plain, (3, 11))


def test_blender_installs_the_wheel_of_its_own_python(tmp_path):
    """The renamed wheels in a real install: Blender's extension system unpacks only its Python's one."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels, "tinydep-1.0-py311-none-any.whl", module="tinydep")
    _write_wheel(wheels, "tinydep-2.0-py313-none-any.whl", module="tinydep")
    (built,) = build_addon.build(tmp_path / "dist", wheel_dir=wheels, with_model=False)
    script = ("import sys, bpy\n"
              "bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo='user_default', "
              "enable_on_install=True)\n"
              "import tinydep\nprint('RESULT', tinydep.VERSION, tinydep.__file__)\n")
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    done = subprocess.run([sys.executable, "-c", script, str(built)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    (_, version, where), = lines
    assert version == {(3, 11): "1.0", (3, 13): "2.0"}[sys.version_info[:2]]
    assert Path(where).is_relative_to(tmp_path / "user")


def test_pinned_dependencies_match_the_project_environment():
    """The add-on's pins (Install button, bundled wheels) are the versions the test environments run."""
    import tomllib

    project = tomllib.loads((build_addon.REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for python, pins in build_addon.dependencies.TESTED_PINS.items():
        environment = {"python_version": "{}.{}".format(*python)}
        wanted = {str(r.name): str(r.specifier) for r in map(Requirement, project)
                  if r.marker is None or r.marker.evaluate(environment)}
        for pin in map(Requirement, pins):
            assert wanted[pin.name] == str(pin.specifier), (python, pin)
