"""What the add-on needs besides Blender, per Blender Python: the one home for the versions that the
"Install dependencies" button asks pip for (``ui/prefs.py``) and that ``build_addon.py --wheels`` bundles.

No bpy here, so the build script can load this file on its own.
"""

from __future__ import annotations

# The versions the add-on's tests run with on each Blender Python (`make test-blender-lines`):
# Python 3.11 is Blender 4.2-5.0 (numpy 1.26), Python 3.13 is Blender 5.1-5.2 (numpy 2).
TESTED_PINS: dict[tuple[int, int], tuple[str, ...]] = {
    (3, 11): ("torch==2.13.0", "librosa==0.11.0"),
    (3, 13): ("torch==2.13.0", "librosa==1.0.0"),
}
EXTRA_REQUIREMENTS = ("soundfile>=0.12", "soxr>=0.3", "safetensors>=0.4")
# The numpy that bundled wheels are resolved against when no Blender is at hand: the numpy the pip bpy
# of the tested line installs (bpy 5.0.1: numpy<2; bpy 5.2.3: numpy>=2.2,<3). Never bundled itself.
NUMPY_FOR_WHEELS: dict[tuple[int, int], str] = {(3, 11): "1.26.4", (3, 13): "2.5.5"}
# Blender ships numpy; a second copy in the extension's wheels would shadow or break Blender's modules.
BLENDER_SHIPS = ("numpy",)
# PyPI's Linux torch is the CUDA build (several GB of nvidia-* wheels); this index has the CPU build.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
IMPORT_NAMES = ("torch", "librosa")  # what "missing dependencies" checks


def requirements(python: tuple[int, int]) -> tuple[str, ...]:
    """pip requirements for a Blender whose Python is ``python`` (unpinned torch/librosa on an untested one)."""
    return (*TESTED_PINS.get(python[:2], ("torch", "librosa")), *EXTRA_REQUIREMENTS)


def is_cuda_project(name: str) -> bool:
    """A project of the CUDA stack: torch's CUDA build requires these, and a CPU bundle holds none."""
    name = name.lower().replace("_", "-")
    return name.startswith(("nvidia-", "cuda-")) or name == "triton"
