"""Build the installable Blender extension zip: ``python build_addon.py -o DIST_DIR [--wheels]``.

The zip holds the add-on (``addon/``), the engine vendored as the sub-package ``engine/`` (the add-on
finds it through ``addon/_engine.py``), the default model under ``assets/default_model`` when it
exists, and ``blender_manifest.toml``. It is built by Blender's own extension builder, the stdlib-only
script ``bl_pkg/cli/blender_ext.py`` that ships inside Blender and the ``bpy`` module, so the result
passes the same validation as ``blender --command extension build``.

``--wheels`` downloads CPU torch + librosa wheels (without numpy, which Blender ships) for each
platform and builds one zip per platform; ``--wheel-dir`` bundles wheels you already have.
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
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent
ADDON_DIR = REPO / "addon"
ENGINE_DIR = REPO / "engine"
DEFAULT_MODEL_DIR = REPO / "assets" / "default_model"
MANIFEST = "blender_manifest.toml"

# What a bundled-dependency build downloads: pip platform tag -> Blender platform name.
WHEEL_PLATFORMS = {
    "manylinux_2_28_x86_64": "linux-x64",
    "win_amd64": "windows-x64",
    "macosx_11_0_arm64": "macos-arm64",
}
WHEEL_REQUIREMENTS = ("torch==2.13.0", "librosa==0.11.0", "soundfile>=0.12", "safetensors>=0.4")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Blender already ships these; bundling a second copy breaks its own modules.
SKIP_WHEELS = ("numpy",)

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


def download_wheels(dest: Path, platforms: Sequence[str] = tuple(WHEEL_PLATFORMS)) -> list[Path]:
    """pip-download cp311 binary wheels for each platform (needs network access)."""
    dest.mkdir(parents=True, exist_ok=True)
    for platform in platforms:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest),
               "--only-binary=:all:", "--python-version", "3.11", "--platform", platform,
               "--extra-index-url", TORCH_CPU_INDEX, *WHEEL_REQUIREMENTS]
        if subprocess.run(cmd).returncode != 0:
            raise BuildError(f"pip could not download the wheels for {platform} (is the network reachable?)")
    return sorted(dest.glob("*.whl"))


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
        project = wheel.name.split("-", 1)[0].lower()
        if project in SKIP_WHEELS:
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
            wheel_files += download_wheels(Path(tmp) / "downloads")
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
                        help="download and bundle CPU torch + librosa wheels, one zip per platform")
    parser.add_argument("--wheel-dir", type=Path, default=None, help="bundle the *.whl files of this folder")
    parser.add_argument("--no-model", action="store_true", help="leave out assets/default_model")
    parser.add_argument("--blender-ext", type=Path, default=None,
                        help="path to Blender's bl_pkg/cli/blender_ext.py (default: the bpy module's)")
    args = parser.parse_args(argv)
    try:
        zips = build(args.out, wheels=args.wheels, wheel_dir=args.wheel_dir, with_model=not args.no_model,
                     blender_ext=args.blender_ext)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in zips:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
