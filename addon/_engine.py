"""Where the add-on finds the engine.

In the installed extension the engine is vendored as a sub-package (``<extension>/engine``); in the
repository it is the top-level ``engine`` package beside ``addon/``. Add-on modules import engine
modules through ``engine_module`` (or the re-exports below), so the same code runs in both places.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

try:  # the extension zip built by build_addon.py
    importlib.import_module(f"{__package__}.engine")
    ENGINE_PACKAGE = f"{__package__}.engine"
except ImportError:  # running from the repository (tests, python -m addon.batch)
    ENGINE_PACKAGE = "engine"


def engine_module(name: str) -> ModuleType:
    """Import ``engine.<name>`` from wherever the engine lives."""
    return importlib.import_module(f"{ENGINE_PACKAGE}.{name}")


# Light modules (numpy only) are imported with the add-on; the others on first use (``_engine.audio``),
# so the add-on registers and offers to install its dependencies when torch or librosa are missing.
skeleton = engine_module("skeleton")
rotation = engine_module("rotation")
errors = engine_module("errors")
dance = engine_module("dance")
_ON_FIRST_USE = ("audio", "checkpoint", "cli", "files", "generate", "joint_rotations", "options")

if TYPE_CHECKING:  # the real modules for the type checker (at run time they come from __getattr__)
    from engine import audio, checkpoint, cli, files, generate, joint_rotations, options  # noqa: F401


def __getattr__(name: str) -> ModuleType:
    if name in _ON_FIRST_USE:
        return engine_module(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
