"""Build the installable Blender extension zip: ``python build_addon.py -o DIST_DIR [--wheels]``.

The zip holds the add-on (``addon/``), the engine vendored as the sub-package ``engine/`` (the add-on
finds it through ``addon/_engine.py``), the default model under ``assets/default_model`` when it
exists, and ``blender_manifest.toml``. It is built by Blender's own extension builder, the stdlib-only
script ``bl_pkg/cli/blender_ext.py`` that ships inside Blender and the ``bpy`` module, so the result
passes the same validation as ``blender --command extension build``.

``--wheels`` downloads the pinned CPU torch + librosa wheels (without numpy, which Blender ships) for
each platform and each Blender Python (3.11 and 3.13) and builds one zip per platform, which serves every
Blender line on it; ``--wheel-dir`` bundles wheels you already have.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent
ADDON_DIR = REPO / "addon"
ENGINE_DIR = REPO / "engine"
DEFAULT_MODEL_DIR = REPO / "assets" / "default_model"
MANIFEST = "blender_manifest.toml"


def _load_dependencies():
    """``addon/dependencies.py`` on its own (the ``addon`` package imports bpy): the pinned requirements."""
    spec = importlib.util.spec_from_file_location("addon_dependencies", ADDON_DIR / "dependencies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dependencies = _load_dependencies()
# What a bundled-dependency build downloads: pip platform tag -> Blender platform name, and one wheel set
# per Blender Python (3.11: Blender 4.2-5.0; 3.13: 5.1-5.2). Blender installs the wheels matching its own
# platform and Python from the list, so one zip per platform serves every Blender line.
# Blender 4.2+ needs glibc 2.28, so wheels for any older manylinux tag run too; torch 2.13's macOS wheels
# need macOS 14 (pip takes older macOS tags from the one given).
WHEEL_PLATFORMS: dict[str, tuple[str, ...]] = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_14_0_arm64",),
}
WHEEL_PYTHONS: tuple[tuple[int, int], ...] = tuple(dependencies.TESTED_PINS)

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildError(RuntimeError):
    """The extension could not be built (the message says why)."""


def find_blender_ext() -> Path:
    """Blender's extension builder script: $BLENDER_EXT, else the copy inside the installed bpy module."""
    env = os.environ.get("BLENDER_EXT")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("bpy")  # locates the package without importing it (slow)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("Blender's extension builder was not found: install the bpy module "
                         "(pip install bpy==5.0.1) or set BLENDER_EXT to .../bl_pkg/cli/blender_ext.py")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise BuildError("the bpy module has no scripts/addons_core/bl_pkg/cli/blender_ext.py; set BLENDER_EXT")


def stage_extension(stage: Path, with_model: bool = True) -> Path:
    """Copy add-on, engine and default model into ``stage`` laid out as the extension root."""
    shutil.copytree(ADDON_DIR, stage, ignore=_IGNORE)
    shutil.copytree(ENGINE_DIR, stage / "engine", ignore=_IGNORE)
    if with_model and DEFAULT_MODEL_DIR.is_dir():
        shutil.copytree(DEFAULT_MODEL_DIR, stage / "assets" / "default_model", ignore=_IGNORE)
    return stage


# The marker environment of each Blender platform, for requirements pip would judge by this machine.
_MARKER_PLATFORMS = {
    "linux-x64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                  "os_name": "posix"},
    "windows-x64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                    "os_name": "nt"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                    "os_name": "posix"},
}


def wheel_requirements(wheel: Path, platform: str, python: tuple[int, int]) -> list[str]:
    """The requirements a wheel declares that apply on ``platform`` with ``python``, markers judged for
    that target (``pip download --platform`` judges them by the machine it runs on, which would pull
    torch's Linux-only CUDA wheels into a Windows bundle)."""
    from packaging.markers import default_environment

    environment = {**default_environment(), **_MARKER_PLATFORMS[platform], "python_version": "{}.{}".format(
        *python), "python_full_version": "{}.{}.0".format(*python), "implementation_name": "cpython",
        "platform_python_implementation": "CPython", "extra": ""}
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode("utf-8").splitlines()
    found = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.partition(":")[2].strip())
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            found.append(str(requirement))
    return found


def download_wheels(
    dest: Path,
    platforms: Sequence[str] = tuple(WHEEL_PLATFORMS),
    pythons: Sequence[tuple[int, int]] = WHEEL_PYTHONS,
    torch_index: str = dependencies.TORCH_CPU_INDEX,
) -> list[Path]:
    """pip-download the binary wheels of the pinned dependencies for each Blender platform and Python
    (needs network access), resolved against the numpy that Blender line ships. ``torch_index`` is where
    the CPU torch comes from (PyPI's Linux torch is the CUDA build, which is refused). torch is fetched
    on its own and its requirements judged for the target platform (see ``wheel_requirements``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for platform in platforms:
        resolved: dict[tuple[int, int], list[Path]] = {}
        for python in pythons:
            version = "{}.{}".format(*python)
            folder = dest / platform / f"cp{python[0]}{python[1]}"
            folder.mkdir(parents=True, exist_ok=True)
            target = ["--only-binary=:all:", "--python-version", version,
                      *[arg for tag in WHEEL_PLATFORMS[platform] for arg in ("--platform", tag)]]
            index = ["--extra-index-url", torch_index] if torch_index else []
            pins = dependencies.requirements(python)
            torch_pin = [r for r in pins if r.split("=")[0].strip() == "torch"]
            _pip_download([*target, *index, "--no-deps", "--dest", str(folder), *torch_pin], platform, version)
            (torch_wheel,) = folder.glob("torch-*.whl")
            torch_needs = wheel_requirements(torch_wheel, platform, python)
            if any(dependencies.is_cuda_project(Requirement(r).name) for r in torch_needs):
                raise BuildError(f"{torch_wheel.name} is torch's CUDA build (it needs nvidia-* wheels of "
                                 f"several GB): no CPU torch for {platform}, Python {version} at "
                                 f"{torch_index or 'the configured indexes'}; give --torch-index, or "
                                 "bundle CPU torch wheels you have with --wheel-dir")
            others = [r for r in pins if r not in torch_pin]
            _pip_download([*target, "--dest", str(folder), *others, *torch_needs,
                           f"numpy=={dependencies.NUMPY_FOR_WHEELS[python]}"], platform, version)
            resolved[python] = sorted(w for w in folder.glob("*.whl")
                                      if _project(w.name) not in dependencies.BLENDER_SHIPS)
        merge_python_sets(resolved, dest)
    return sorted(dest.glob("*.whl"))


def _project(wheel_name: str) -> str:
    return wheel_name.split("-", 1)[0].lower().replace("_", "-")


def _version(wheel_name: str) -> tuple[Any, ...]:
    from packaging.version import Version

    return (Version(wheel_name.split("-")[1]),)


def merge_python_sets(resolved: dict[tuple[int, int], list[Path]], dest: Path) -> list[Path]:
    """Put the wheel sets pip resolved for each Blender Python of one platform into ``dest``, such that
    Blender installs exactly each Python's own set. Blender takes, per project, the newest version among
    the wheels whose tags fit its Python, so a pure-Python wheel that not every Python's set holds
    (librosa 0.11 for 3.11, 1.0 for 3.13) is renamed to its Python's tag (``py311``, a valid PEP 425 tag
    that Blender reads as Python 3.11 only). Checked against Blender's rule afterwards."""
    names_per_python = [{w.name for w in wheels} for wheels in resolved.values()]
    shared = set.intersection(*names_per_python) if names_per_python else set()
    written: dict[tuple[int, int], list[str]] = {}
    for python, wheels in resolved.items():
        for wheel in wheels:
            name = wheel.name
            if _is_pure(name) and name not in shared:
                parts = name[: -len(".whl")].split("-")
                parts[-3] = f"py{python[0]}{python[1]}"
                name = "-".join(parts) + ".whl"
            shutil.copy2(wheel, dest / name)
            written.setdefault(python, []).append(name)
    every = sorted({n for names in written.values() for n in names})
    for python, names in written.items():
        chosen = blender_selection(every, python)
        if sorted(chosen) != sorted(names):
            raise BuildError(f"Blender with Python {python[0]}.{python[1]} would install "
                             f"{sorted(set(chosen) ^ set(names))} differently from what pip resolved")
    return [dest / n for n in every]


def _is_pure(wheel_name: str) -> bool:
    python_tag, abi, platform = wheel_name[: -len(".whl")].split("-")[-3:]
    return abi == "none" and platform == "any"


def blender_selection(wheel_names: Sequence[str], python: tuple[int, int]) -> list[str]:
    """The wheels Blender's extension system installs for ``python`` from a one-platform list: those whose
    Python tag fits (``py3``, ``py311``/``cp311`` exactly, or an older ``abi3``), then the newest version
    of each project (``bl_pkg``'s wheel filter and ``wheel_manager``'s de-duplication)."""
    fitting = []
    for name in wheel_names:
        python_tag, abi, _ = name[: -len(".whl")].split("-")[-3:]
        for tag in python_tag.split("."):
            digits = tag[2:]
            if digits == str(python[0]) or digits == f"{python[0]}{python[1]}":
                fitting.append(name)
                break
            if abi == "abi3" and len(digits) > 1 and (int(digits[0]), int(digits[1:])) <= python:
                fitting.append(name)
                break
    newest: dict[str, str] = {}
    for name in fitting:
        seen = newest.get(_project(name))
        if seen is None or _version(name) > _version(seen):
            newest[_project(name)] = name
    return sorted(newest.values())


def _pip_download(args: list[str], platform: str, version: str) -> None:
    if subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", *args]).returncode != 0:
        raise BuildError(f"pip could not download the wheels for {platform}, Python {version} "
                         "(is the network reachable?)")


def wheel_platforms(wheel_name: str) -> set[str]:
    """Blender platforms a wheel runs on, from its platform tag; empty for pure-Python wheels."""
    tag = wheel_name[: -len(".whl")].split("-")[-1]
    found: set[str] = set()
    for part in tag.split("."):
        if part == "any":
            continue
        if "linux" in part:
            found.add("linux-arm64" if "aarch64" in part else "linux-x64")
        elif part.startswith("win"):
            found.add("windows-arm64" if "arm64" in part else "windows-x64")
        elif part.startswith("macosx"):
            if "universal2" in part:
                found |= {"macos-arm64", "macos-x64"}
            else:
                found.add("macos-arm64" if "arm64" in part else "macos-x64")
    return found


def add_wheels(stage: Path, wheels: Sequence[Path]) -> list[str]:
    """Copy wheels into ``stage/wheels`` and list them in the staged manifest; returns their paths."""
    wheel_dir = stage / "wheels"
    wheel_dir.mkdir(exist_ok=True)
    listed: list[str] = []
    for wheel in wheels:
        if _project(wheel.name) in dependencies.BLENDER_SHIPS:
            continue
        shutil.copy2(wheel, wheel_dir / wheel.name)
        listed.append(f"./wheels/{wheel.name}")
    if listed:
        manifest = stage / MANIFEST
        text = manifest.read_text()
        entry = "wheels = [\n" + "".join(f'  "{w}",\n' for w in listed) + "]\n"
        platforms = sorted(set().union(*(wheel_platforms(Path(w).name) for w in listed)))
        if platforms:  # binary wheels: one zip per platform (--split-platforms needs the list)
            entry += "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]\n"
        entry += "\n"
        # Top-level keys must come before the first [table].
        first_table = re.search(r"^\[", text, flags=re.M)
        at = first_table.start() if first_table else len(text)
        manifest.write_text(text[:at] + entry + text[at:])
    return listed


def build(
    out_dir: str | Path,
    *,
    wheels: bool = False,
    wheel_dir: str | Path | None = None,
    with_model: bool = True,
    blender_ext: str | Path | None = None,
    platforms: Sequence[str] = tuple(WHEEL_PLATFORMS),
    pythons: Sequence[tuple[int, int]] = WHEEL_PYTHONS,
    torch_index: str = dependencies.TORCH_CPU_INDEX,
) -> list[Path]:
    """Build the extension into ``out_dir``; returns the zip(s) written (one per platform with wheels)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = Path(blender_ext) if blender_ext else find_blender_ext()
    with tempfile.TemporaryDirectory(prefix="dance-ext-") as tmp:
        stage = stage_extension(Path(tmp) / "stage", with_model=with_model)
        wheel_files: list[Path] = []
        if wheel_dir is not None:
            wheel_files += sorted(Path(wheel_dir).glob("*.whl"))
        if wheels:
            wheel_files += download_wheels(Path(tmp) / "downloads", platforms, pythons, torch_index)
        listed = add_wheels(stage, wheel_files) if wheel_files else []
        before = set(out_dir.glob("*.zip"))
        cmd = [sys.executable, str(builder), "build", "--source-dir", str(stage), "--output-dir", str(out_dir)]
        if any(wheel_platforms(Path(w).name) for w in listed):
            cmd.append("--split-platforms")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"Blender's extension builder failed:\n{result.stdout}{result.stderr}")
    written = sorted(set(out_dir.glob("*.zip")) - before) or _zips_named_in(result.stdout, out_dir)
    if not written:
        raise BuildError(f"the builder reported success but wrote no zip:\n{result.stdout}")
    return written


def _zips_named_in(output: str, out_dir: Path) -> list[Path]:
    """Zips the builder mentions (a rebuild overwrites the same file names)."""
    names = re.findall(r"([\w.\-]+\.zip)", output)
    return sorted({out_dir / Path(n).name for n in names if (out_dir / Path(n).name).exists()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder to write the zip(s) into")
    parser.add_argument("--wheels", action="store_true",
                        help="download and bundle the pinned CPU torch + librosa wheels for Python 3.11 and "
                             "3.13, one zip per platform")
    parser.add_argument("--platform", action="append", choices=sorted(WHEEL_PLATFORMS), default=None,
                        help="with --wheels: only this Blender platform (repeatable; default: all)")
    parser.add_argument("--python", action="append", choices=["{}.{}".format(*p) for p in WHEEL_PYTHONS],
                        default=None, help="with --wheels: only this Blender Python (repeatable; default: all)")
    parser.add_argument("--torch-index", default=dependencies.TORCH_CPU_INDEX,
                        help="with --wheels: the index with CPU torch builds (default: %(default)s)")
    parser.add_argument("--wheel-dir", type=Path, default=None, help="bundle the *.whl files of this folder")
    parser.add_argument("--no-model", action="store_true", help="leave out assets/default_model")
    parser.add_argument("--blender-ext", type=Path, default=None,
                        help="path to Blender's bl_pkg/cli/blender_ext.py (default: the bpy module's)")
    args = parser.parse_args(argv)
    try:
        zips = build(args.out, wheels=args.wheels, wheel_dir=args.wheel_dir, with_model=not args.no_model,
                     blender_ext=args.blender_ext, platforms=args.platform or tuple(WHEEL_PLATFORMS),
                     pythons=[tuple(map(int, v.split("."))) for v in args.python] if args.python
                     else WHEEL_PYTHONS, torch_index=args.torch_index)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in zips:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
